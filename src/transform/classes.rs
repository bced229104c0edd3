//! Networks' outputs with a class axis: from `C` class logits (or one
//! channel per structure) to the score maps the transforms see.
//!
//! One softmax serves both uses: [`TwoClassSoftmax`] (the foreground
//! probability of two-class logits, as MONAI and nnU-Net write them) and
//! [`StructureScores`] (several structures of a label map, each the sum of
//! its classes' probabilities; METHOD.md §4.1). With two classes both
//! compute `sigmoid(l_1 - l_0)`, which keeps every bit a direct
//! `exp(l_1) / (exp(l_0) + exp(l_1))` would lose to rounding.

use ndarray::{Array, ArrayRef, Axis, RemoveAxis};

use super::sigmoid;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::mask::Structure;

/// `p(class 1)` of two logits: `sigmoid(l_1 - l_0)`, `0.5` for equal
/// logits (also equal infinities, where the difference is NaN).
#[inline]
fn two_class<A: Float>(l0: A, l1: A) -> A {
    if l0 == l1 {
        A::from_f64_lossy(0.5)
    } else {
        sigmoid(l1 - l0)
    }
}

/// Numerically stable softmax of one voxel's logits into `p`: two classes
/// through [`two_class`], more shifted by the maximum; `+inf` classes share
/// the mass; all `-inf` is uniform.
fn softmax<A: Float>(logits: impl Iterator<Item = A> + Clone, p: &mut Vec<A>) {
    p.clear();
    let mut it = logits.clone();
    if let (Some(l0), Some(l1), None) = (it.next(), it.next(), it.next()) {
        let p1 = two_class(l0, l1);
        p.extend([two_class(l1, l0), p1]);
        return;
    }
    let m = logits.clone().fold(A::neg_infinity(), |a, x| if x > a { x } else { a });
    if m == A::infinity() || m == A::neg_infinity() {
        // the top classes (all of them if every logit is -inf) share the mass
        p.extend(logits.map(|x| if x == m { A::one() } else { A::zero() }));
    } else {
        p.extend(logits.map(|x| (x - m).exp()));
    }
    let total = p.iter().fold(A::zero(), |a, &x| a + x);
    for x in p.iter_mut() {
        *x /= total;
    }
}

/// Two-class softmax along a class axis: turns a network's two-channel
/// logits `(l_0, l_1)` into the foreground probability
/// `exp(l_1) / (exp(l_0) + exp(l_1)) = sigmoid(l_1 - l_0)`.
///
/// This step removes an axis, so it runs before the image -> image
/// [`Transform`](super::Transform)s: apply it to each logit image, then calibrate on the result.
///
/// ```
/// use confseg::TwoClassSoftmax;
/// use ndarray::{array, Axis};
/// // shape (2 classes, 1, 2)
/// let logits = array![[[0.0_f64, 1.0]], [[0.0, 3.0]]];
/// let p = TwoClassSoftmax::new(Axis(0)).apply(&logits)?;
/// assert_eq!(p.shape(), &[1, 2]);
/// assert!((p[[0, 0]] - 0.5).abs() < 1e-12);
/// assert!((p[[0, 1]] - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-12);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoClassSoftmax {
    class_axis: Axis,
}

impl TwoClassSoftmax {
    /// Softmax over `class_axis`; class 1 is the foreground.
    #[must_use]
    pub fn new(class_axis: Axis) -> Self {
        TwoClassSoftmax { class_axis }
    }

    /// The class axis.
    #[must_use]
    pub fn class_axis(&self) -> Axis {
        self.class_axis
    }

    /// Foreground probability, with the class axis removed.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the class axis does not exist or does
    /// not have length 2.
    pub fn apply<A: Float, D: RemoveAxis>(&self, logits: &ArrayRef<A, D>) -> Result<Array<A, D::Smaller>> {
        let ax = self.class_axis.index();
        if ax >= logits.ndim() || logits.len_of(self.class_axis) != 2 {
            return Err(Error::InvalidParameter {
                name: "class axis",
                value: ax.to_string(),
                reason: format!("needs an axis of length 2; logits have shape {:?}", logits.shape()),
            });
        }
        let l0 = logits.index_axis(self.class_axis, 0);
        let l1 = logits.index_axis(self.class_axis, 1);
        Ok(ndarray::Zip::from(&l0).and(&l1).map_collect(|&a, &b| two_class(a, b)))
    }
}

/// How each structure's score map comes from a network's output (one
/// image, with an extra class or channel axis).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "kind", rename_all = "kebab-case"))]
pub enum StructureScores {
    /// Logits of `C >= 2` classes along `axis`, turned into probabilities
    /// by a softmax; a structure's score is the sum of the probabilities of
    /// the classes whose label is in its label set. `class_labels[c]` is
    /// the label value of class `c` (BraTS: `[0, 1, 2, 4]`).
    Softmax {
        /// The class axis of one image.
        axis: usize,
        /// The label of each class, in channel order.
        class_labels: Vec<i64>,
    },
    /// One score map per structure along `axis`, in the order of the
    /// structures (already computed, e.g. per-structure logits).
    Channels {
        /// The channel axis of one image.
        axis: usize,
    },
    /// Probabilities of `C >= 2` classes along `axis`, already normalised
    /// (nnU-Net's `.npz`): a structure's score is the sum of the
    /// probabilities of its classes, as for [`StructureScores::Softmax`]
    /// without the softmax.
    Probabilities {
        /// The class axis of one image.
        axis: usize,
        /// The label of each class, in channel order.
        class_labels: Vec<i64>,
    },
}

impl StructureScores {
    /// The class or channel axis of one image.
    #[must_use]
    pub fn axis(&self) -> usize {
        match self {
            StructureScores::Softmax { axis, .. }
            | StructureScores::Channels { axis }
            | StructureScores::Probabilities { axis, .. } => *axis,
        }
    }

    /// The label of each class, for scores over classes (not channels).
    #[must_use]
    pub fn class_labels(&self) -> Option<&[i64]> {
        match self {
            StructureScores::Softmax { class_labels, .. }
            | StructureScores::Probabilities { class_labels, .. } => Some(class_labels),
            StructureScores::Channels { .. } => None,
        }
    }

    /// The score map of every structure, in order, from one image of the
    /// network's output (the class or channel axis removed).
    ///
    /// ```
    /// use confseg::mask::Structure;
    /// use confseg::transform::StructureScores;
    /// use ndarray::array;
    /// // 3 classes (labels 0, 1, 2) along axis 0, one voxel
    /// let logits = array![[0.0_f64], [1.0], [2.0]];
    /// let s = StructureScores::Softmax { axis: 0, class_labels: vec![0, 1, 2] };
    /// let any = "ANY=1,2".parse::<Structure>()?;
    /// let maps = s.reduce(&logits, &[any])?;
    /// let e = [1.0_f64, 1f64.exp(), 2f64.exp()];
    /// assert!((maps[0][0] - (e[1] + e[2]) / (e[0] + e[1] + e[2])).abs() < 1e-15);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the axis does not exist, or has a
    /// length other than the number of classes (at least 2) or of structures.
    pub fn reduce<A: Float, D: RemoveAxis>(
        &self,
        output: &ArrayRef<A, D>,
        structures: &[Structure],
    ) -> Result<Vec<Array<A, D::Smaller>>> {
        let axis = self.axis();
        let bad =
            |reason: String| Error::InvalidParameter { name: "class axis", value: axis.to_string(), reason };
        if axis >= output.ndim() {
            return Err(bad(format!("the output has shape {:?}", output.shape())));
        }
        let len = output.len_of(Axis(axis));
        match self {
            StructureScores::Channels { .. } => {
                if len != structures.len() {
                    return Err(bad(format!(
                        "{len} channels for {} structures (output shape {:?})",
                        structures.len(),
                        output.shape()
                    )));
                }
                Ok((0..len).map(|k| output.index_axis(Axis(axis), k).to_owned()).collect())
            }
            StructureScores::Softmax { class_labels, .. }
            | StructureScores::Probabilities { class_labels, .. } => {
                let normalise = matches!(self, StructureScores::Softmax { .. });
                if len < 2 || len != class_labels.len() {
                    return Err(bad(format!(
                        "{len} classes along it (output shape {:?}) but {} class labels; a softmax needs at least 2",
                        output.shape(),
                        class_labels.len()
                    )));
                }
                // which classes make up each structure
                let member: Vec<Vec<bool>> = structures
                    .iter()
                    .map(|s| class_labels.iter().map(|&l| s.labels().contains(i128::from(l))).collect())
                    .collect();
                let shape = output.raw_dim().remove_axis(Axis(axis));
                let mut maps: Vec<Array<A, D::Smaller>> =
                    structures.iter().map(|_| Array::zeros(shape.clone())).collect();
                let mut p = Vec::with_capacity(len);
                // lanes and the standard-layout outputs both run in row-major order
                let mut outs: Vec<_> = maps.iter_mut().map(|m| m.iter_mut()).collect();
                for lane in output.lanes(Axis(axis)) {
                    if normalise {
                        softmax(lane.iter().copied(), &mut p);
                    } else {
                        p.clear();
                        p.extend(lane.iter().copied());
                    }
                    for (k, out) in outs.iter_mut().enumerate() {
                        let v =
                            p.iter().zip(&member[k]).fold(A::zero(), |a, (&x, &m)| if m { a + x } else { a });
                        if let Some(o) = out.next() {
                            *o = v;
                        }
                    }
                }
                Ok(maps)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array3};

    #[test]
    fn softmax_checks_axis() {
        let l = Array::<f64, _>::zeros((3, 4));
        assert!(TwoClassSoftmax::new(Axis(0)).apply(&l).is_err());
        assert!(TwoClassSoftmax::new(Axis(5)).apply(&l).is_err());
        let l = array![[f64::INFINITY, f64::INFINITY], [2.0, 1.0], [0.0, f64::INFINITY]];
        let p = TwoClassSoftmax::new(Axis(1)).apply(&l).unwrap();
        assert_eq!(p[0], 0.5);
        assert!((p[1] - (-1.0f64).exp() / (1.0 + (-1.0f64).exp())).abs() < 1e-15);
        assert_eq!(p[2], 1.0);
    }

    #[test]
    fn softmax_over_classes_equals_a_direct_computation() {
        let logits =
            Array3::from_shape_fn((4, 5, 3), |(c, i, j)| ((c * 7 + i * 3 + j) % 11) as f64 * 0.7 - 3.0);
        let labels = vec![0, 1, 2, 4];
        let structures: Vec<Structure> =
            ["WT=1,2,4", "TC=1,4", "ET=4"].iter().map(|s| s.parse().unwrap()).collect();
        let maps = StructureScores::Softmax { axis: 0, class_labels: labels.clone() }
            .reduce(&logits, &structures)
            .unwrap();
        for i in 0..5 {
            for j in 0..3 {
                let e: Vec<f64> = (0..4).map(|c| logits[[c, i, j]].exp()).collect();
                let z: f64 = e.iter().sum();
                let want = [(e[1] + e[2] + e[3]) / z, (e[1] + e[3]) / z, e[3] / z];
                for k in 0..3 {
                    assert!((maps[k][[i, j]] - want[k]).abs() < 1e-14, "{k} {i} {j}");
                }
            }
        }
        // f32, another axis, extreme logits without NaN
        let l = array![[f32::INFINITY, 1.0, f32::NEG_INFINITY], [f32::INFINITY, 1e30, f32::NEG_INFINITY]];
        let one: Vec<Structure> = vec!["A=1".parse().unwrap()];
        let m = StructureScores::Softmax { axis: 0, class_labels: vec![0, 1] }.reduce(&l, &one).unwrap();
        assert_eq!(m[0], array![0.5, 1.0, 0.5]);
        // two classes: the foreground probability of the two-class softmax
        let two = array![[0.0_f64, 1.0, -2.0], [0.5, -1.0, 3.0]];
        let m = StructureScores::Softmax { axis: 0, class_labels: vec![0, 1] }.reduce(&two, &one).unwrap();
        let p = TwoClassSoftmax::new(Axis(0)).apply(&two).unwrap();
        assert!(m[0].iter().zip(p.iter()).all(|(a, b)| (a - b).abs() < 1e-15));
        // channels are taken as they are, in order
        let ch = StructureScores::Channels { axis: 1 }
            .reduce(&two.t(), &[one[0].clone(), one[0].clone()])
            .unwrap();
        assert_eq!(ch[1], two.row(1));
        assert!(StructureScores::Channels { axis: 0 }.reduce(&two, &one).is_err());
        assert!(StructureScores::Softmax { axis: 2, class_labels: vec![0, 1] }.reduce(&two, &one).is_err());
    }
}
