//! Masks: element types that hold 0/1 (bool, integers, floats),
//! [`Labels`] (which voxels of a label map are the object), a [`Coding`]
//! (labels and a value marking voxels to ignore) read into [`Voxel`]s, and
//! the named [`Structure`]s of a label map.

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
/// [`Error::NonBinaryMask`] wherever a mask is read. A [`Voxel`] mask may
/// also mark voxels as ignored: they are neither object nor background.
pub trait MaskValue: Copy + PartialEq + Send + Sync + 'static {
    /// Whether the type can mark a voxel as ignored ([`Voxel`] only): the
    /// consumers skip the per-voxel test otherwise.
    const MAY_IGNORE: bool = false;
    /// Whether the value is exactly 0 or 1 (or ignored, for [`Voxel`]).
    fn is_binary(self) -> bool;
    /// Whether the value is 1 (object). Meaningful only for binary values.
    fn is_object(self) -> bool;
    /// Whether the voxel is ignored: it counts neither as object nor as
    /// background ([`Voxel::Ignored`]).
    #[inline]
    fn is_ignored(self) -> bool {
        false
    }
    /// The value as `f64`, for error messages.
    fn to_f64(self) -> f64;
}

/// One voxel of a true mask read with a [`Coding`]: object, background, or
/// ignored (counted neither in the calibration statistics nor in coverage,
/// set sizes or losses; METHOD.md §4.7).
///
/// As a byte ([`Voxel::code`]) it is 0, 1 or 2, which is how the readers of
/// [`io`](crate::io) return masks read with an ignore value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Voxel {
    /// Not the object.
    #[default]
    Background = 0,
    /// The object.
    Object = 1,
    /// Ignored: neither object nor background.
    Ignored = 2,
}

impl Voxel {
    /// The byte: 0 background, 1 object, 2 ignored.
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The voxel of a byte: 0, 1, and 2 only if `ignored_allowed`
    /// (`None` for anything else).
    #[must_use]
    pub fn from_code(code: u8, ignored_allowed: bool) -> Option<Voxel> {
        match code {
            0 => Some(Voxel::Background),
            1 => Some(Voxel::Object),
            2 if ignored_allowed => Some(Voxel::Ignored),
            _ => None,
        }
    }

    /// A mask of bytes (0, 1, and 2 = ignored if `ignored_allowed`, as the
    /// readers return them) as voxels.
    ///
    /// # Errors
    /// [`Error::NonBinaryMask`] naming the first other value.
    pub fn from_codes<D: Dimension>(
        codes: &ArrayRef<u8, D>,
        ignored_allowed: bool,
    ) -> Result<ndarray::Array<Voxel, D>> {
        if let Some(p) = codes.iter().position(|&c| Voxel::from_code(c, ignored_allowed).is_none()) {
            return Err(Error::NonBinaryMask {
                image: None,
                index: crate::grid::unravel(p, codes.shape()),
                value: codes.iter().nth(p).map_or(f64::NAN, |&c| f64::from(c)),
            });
        }
        Ok(codes.mapv(|c| Voxel::from_code(c, ignored_allowed).unwrap_or_default()))
    }
}

impl MaskValue for Voxel {
    const MAY_IGNORE: bool = true;
    #[inline]
    fn is_binary(self) -> bool {
        true
    }
    #[inline]
    fn is_object(self) -> bool {
        self == Voxel::Object
    }
    #[inline]
    fn is_ignored(self) -> bool {
        self == Voxel::Ignored
    }
    fn to_f64(self) -> f64 {
        f64::from(self.code())
    }
}

/// How the values of a mask or label map are read: which are the object
/// ([`Labels`]) and which one, if any, marks voxels to ignore (a value such
/// as 255 for "not annotated"). Every other valid value is background.
///
/// ```
/// use confseg::mask::{Coding, Labels, Voxel};
/// use ndarray::array;
/// let c = Coding::new(Labels::Binary, Some(255))?;
/// let v = c.read(&array![[0u8, 1], [255, 1]])?;
/// assert_eq!(v, array![[Voxel::Background, Voxel::Object], [Voxel::Ignored, Voxel::Object]]);
/// assert!(c.read(&array![[0u8, 2]]).is_err()); // neither 0, 1 nor ignored
/// assert!(Coding::new(Labels::select([1, 255])?, Some(255)).is_err()); // collides
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Coding {
    labels: Labels,
    ignore: Option<i64>,
}

impl From<Labels> for Coding {
    fn from(labels: Labels) -> Self {
        Coding { labels, ignore: None }
    }
}

impl From<&Labels> for Coding {
    fn from(labels: &Labels) -> Self {
        Coding { labels: labels.clone(), ignore: None }
    }
}

impl From<&Coding> for Coding {
    fn from(c: &Coding) -> Self {
        c.clone()
    }
}

impl Coding {
    /// The object's `labels` and the value that marks voxels to ignore.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the ignore value is one of the
    /// object's labels, or 0 or 1 for a binary mask.
    pub fn new(labels: Labels, ignore: Option<i64>) -> Result<Coding> {
        if let Some(k) = ignore {
            let collides = match &labels {
                Labels::Binary => k == 0 || k == 1,
                Labels::Select(_) => labels.contains(i128::from(k)),
            };
            if collides {
                let reason = match &labels {
                    Labels::Binary => {
                        "0 and 1 are a binary mask's background and object; give the value that marks \
                                       voxels to ignore (e.g. 255)"
                            .to_owned()
                    }
                    Labels::Select(_) => {
                        format!("it is one of the object's labels ({labels}); drop it from the labels or ignore another value")
                    }
                };
                return Err(Error::InvalidParameter { name: "ignore label", value: k.to_string(), reason });
            }
        }
        Ok(Coding { labels, ignore })
    }

    /// The object's labels.
    #[must_use]
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The value that marks voxels to ignore, if any.
    #[must_use]
    pub fn ignore(&self) -> Option<i64> {
        self.ignore
    }

    /// The voxel of one value (`label`: the value if it is a whole number),
    /// or `None` for a value that is neither object, background nor ignored.
    #[must_use]
    pub fn voxel(&self, label: Option<i128>) -> Option<Voxel> {
        let label = label?;
        if self.ignore.is_some_and(|k| i128::from(k) == label) {
            return Some(Voxel::Ignored);
        }
        match &self.labels {
            Labels::Binary => match label {
                0 => Some(Voxel::Background),
                1 => Some(Voxel::Object),
                _ => None,
            },
            Labels::Select(_) => {
                Some(if self.labels.contains(label) { Voxel::Object } else { Voxel::Background })
            }
        }
    }

    /// A mask or label map as voxels.
    ///
    /// # Errors
    /// [`Error::NonBinaryMask`] (for [`Labels::Binary`]) or
    /// [`Error::InvalidLabel`] for a value that is neither the object,
    /// background nor the ignore value, naming the voxel.
    pub fn read<M: MaskValue, D: Dimension>(&self, map: &ArrayRef<M, D>) -> Result<ndarray::Array<Voxel, D>> {
        let mut bad = None;
        let out = map.mapv(|v| {
            let x = v.to_f64();
            #[allow(clippy::cast_possible_truncation)]
            let label = (x.fract() == 0.0 && x.abs() < 9e15).then_some(x as i128);
            match self.voxel(label) {
                Some(v) => v,
                None => {
                    bad.get_or_insert(x);
                    Voxel::Background
                }
            }
        });
        match bad {
            None => Ok(out),
            Some(value) => {
                let p = map.iter().position(|v| v.to_f64().to_bits() == value.to_bits()).unwrap_or(0);
                let index = crate::grid::unravel(p, map.shape());
                Err(match self.labels {
                    Labels::Binary => Error::NonBinaryMask { image: None, index, value },
                    Labels::Select(_) => Error::InvalidLabel { image: None, index, value },
                })
            }
        }
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.labels)?;
        if let Some(k) = self.ignore {
            write!(f, ", {k} ignored")?;
        }
        Ok(())
    }
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
