//! Masks: element types that hold 0/1 (bool, integers, floats), and
//! [`Labels`], which voxels of a label map are the object.

use crate::error::{Error, Result};

/// Which voxels of a mask are the object.
///
/// Medical label maps hold several structures (BraTS: 1 necrosis, 2 edema,
/// 4 enhancing tumour); a structure is a set of labels (whole tumour =
/// {1, 2, 4}).
///
/// ```
/// use confseg::mask::Labels;
/// let wt = Labels::select([4, 1, 2, 1])?;
/// assert!(wt.contains(4) && !wt.contains(3));
/// assert_eq!(wt.to_string(), "1,2,4");
/// assert!(Labels::select([]).is_err());
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Labels {
    /// A binary mask: every value must be 0 or 1, and 1 is the object.
    #[default]
    Binary,
    /// A label map: the object is the voxels whose (integer) label is in
    /// this sorted, non-empty set; other integer labels are background.
    Select(Vec<i64>),
}

impl Labels {
    /// The union of `labels` (in any order, repeats ignored).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if no label is given.
    pub fn select(labels: impl IntoIterator<Item = i64>) -> Result<Labels> {
        let mut v: Vec<i64> = labels.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        if v.is_empty() {
            return Err(Error::InvalidParameter {
                name: "labels",
                value: "[]".into(),
                reason: "give at least one label".into(),
            });
        }
        Ok(Labels::Select(v))
    }

    /// Whether a voxel with this label is object (for [`Labels::Binary`]: the value 1).
    #[must_use]
    pub fn contains(&self, label: i128) -> bool {
        match self {
            Labels::Binary => label == 1,
            Labels::Select(v) => i64::try_from(label).is_ok_and(|l| v.binary_search(&l).is_ok()),
        }
    }

    /// A label map as a 0/1 mask (one byte per voxel).
    ///
    /// ```
    /// use confseg::mask::Labels;
    /// use ndarray::array;
    /// let m = Labels::select([1, 4])?.binarize(&array![[0u16, 1], [2, 4]])?;
    /// assert_eq!(m, array![[0u8, 1], [0, 1]]);
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NonBinaryMask`] (for [`Labels::Binary`]) or
    /// [`Error::InvalidLabel`] for a value that is not an integer label.
    pub fn binarize<M: MaskValue, D: ndarray::Dimension>(
        &self,
        map: &ndarray::ArrayRef<M, D>,
    ) -> Result<ndarray::Array<u8, D>> {
        let mut bad = None;
        let out = map.mapv(|v| {
            let x = v.to_f64();
            #[allow(clippy::cast_possible_truncation)]
            let label = (x.fract() == 0.0 && x.abs() < 9e15).then_some(x as i128);
            match (self, label) {
                (Labels::Binary, Some(0 | 1)) | (Labels::Select(_), Some(_)) => {
                    u8::from(label.is_some_and(|l| self.contains(l)))
                }
                _ => {
                    bad.get_or_insert(x);
                    0
                }
            }
        });
        match bad {
            None => Ok(out),
            Some(value) => {
                let p = map.iter().position(|v| v.to_f64().to_bits() == value.to_bits()).unwrap_or(0);
                let index = crate::image::unravel(p, map.shape());
                Err(match self {
                    Labels::Binary => Error::NonBinaryMask { image: None, index, value },
                    Labels::Select(_) => Error::InvalidLabel { image: None, index, value },
                })
            }
        }
    }
}

impl std::fmt::Display for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Labels::Binary => f.write_str("1 (binary mask)"),
            Labels::Select(v) => {
                let parts: Vec<String> = v.iter().map(i64::to_string).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// An element type that can hold a binary mask value.
///
/// Values other than 0 and 1 are rejected with
/// [`Error::NonBinaryMask`] wherever a mask is read.
pub trait MaskValue: Copy + PartialEq + Send + Sync + 'static {
    /// Whether the value is exactly 0 or 1.
    fn is_binary(self) -> bool;
    /// Whether the value is 1 (object). Meaningful only for binary values.
    fn is_object(self) -> bool;
    /// The value as `f64`, for error messages.
    fn to_f64(self) -> f64;
}

impl MaskValue for bool {
    #[inline]
    fn is_binary(self) -> bool {
        true
    }
    #[inline]
    fn is_object(self) -> bool {
        self
    }
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
}

macro_rules! int_mask {
    ($($t:ty),*) => {$(
        impl MaskValue for $t {
            #[inline]
            fn is_binary(self) -> bool {
                self == 0 || self == 1
            }
            #[inline]
            fn is_object(self) -> bool {
                self == 1
            }
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
int_mask!(u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! float_mask {
    ($($t:ty),*) => {$(
        impl MaskValue for $t {
            #[inline]
            fn is_binary(self) -> bool {
                self == 0.0 || self == 1.0
            }
            #[inline]
            fn is_object(self) -> bool {
                self == 1.0
            }
            #[allow(clippy::cast_lossless)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
float_mask!(f32, f64);
