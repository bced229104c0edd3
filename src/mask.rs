//! Masks: element types that hold 0/1 (bool, integers, floats),
//! [`Labels`] (which voxels of a label map are the object) and the named
//! [`Structure`]s of a label map.

use std::fmt;

use ndarray::{ArrayRef, Dimension};

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
    pub fn binarize<M: MaskValue, D: Dimension>(
        &self,
        map: &ArrayRef<M, D>,
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
                let index = crate::grid::unravel(p, map.shape());
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

/// A structure to segment: a name and the labels of the label map that
/// make it up.
///
/// ```
/// use confseg::mask::{Labels, Structure};
/// let wt = Structure::new("WT", Labels::select([1, 2, 4])?)?;
/// assert_eq!(wt.to_string(), "WT=1,2,4");
/// assert_eq!("TC=1,4".parse::<Structure>()?.labels(), &Labels::select([1, 4])?);
/// assert!(Structure::new("has space", Labels::select([1])?).is_err());
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Structure {
    name: String,
    labels: Labels,
}

impl Structure {
    /// A structure: `name` (letters, digits, `_`, `-`; at most 64) and a
    /// label set.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an empty or unusual name, or
    /// [`Labels::Binary`] (a structure needs explicit labels).
    pub fn new(name: impl Into<String>, labels: Labels) -> Result<Self> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(Error::InvalidParameter {
                name: "structure name",
                value: name,
                reason: "use 1 to 64 letters, digits, '_' or '-'".into(),
            });
        }
        if labels == Labels::Binary {
            return Err(Error::InvalidParameter {
                name: "structure labels",
                value: name,
                reason: "a structure is a set of labels, e.g. WT=1,2,4".into(),
            });
        }
        Ok(Structure { name, labels })
    }

    /// The name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The labels.
    #[must_use]
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.labels)
    }
}

impl std::str::FromStr for Structure {
    type Err = Error;
    /// `NAME=L1,L2,...`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidParameter {
            name: "structure",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (name, labels) = s.split_once('=').ok_or_else(|| bad("expected NAME=LABELS, e.g. WT=1,2,4"))?;
        let labels: std::result::Result<Vec<i64>, _> =
            labels.split(',').map(|l| l.trim().parse::<i64>()).collect();
        let labels = labels.map_err(|_| bad("labels must be integers, e.g. WT=1,2,4"))?;
        Structure::new(name.trim(), Labels::select(labels)?)
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
/// Error for the first non-binary value of `m`, if any (row-major order).
pub(crate) fn check_mask<M: MaskValue, D: Dimension>(m: &ArrayRef<M, D>) -> Result<()> {
    match m.iter().position(|v| !v.is_binary()) {
        None => Ok(()),
        Some(p) => Err(Error::NonBinaryMask {
            image: None,
            index: crate::grid::unravel(p, m.shape()),
            value: m.iter().nth(p).map_or(f64::NAN, |v| v.to_f64()),
        }),
    }
}
