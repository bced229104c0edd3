//! Python objects to typed NumPy arrays, without copies where the dtype and
//! byte order allow.
//!
//! Anything `numpy.asarray` accepts is accepted (lists, memory maps, CPU
//! tensors, ...), and objects with only `__dlpack__`. Scores: `float32` and `float64` are used as they are (any
//! strides: the library reads ndarray views); `float16`, `bool` and 8/16-bit
//! integers are converted to `float32` and wider integers to `float64`
//! (exact below 2^53, as the library's `.npy` reader). Masks: `bool` and
//! `uint8` as they are; other integer and float dtypes as `float64`, whose
//! values the library checks for 0/1. A non-native byte order is converted.

use ndarray::Dimension;
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple};

use crate::errors::type_error;

static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The `numpy` module.
pub fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    NUMPY.get_or_try_init(py, || py.import("numpy").map(Bound::unbind)).map(|m| m.bind(py))
}

/// `numpy.asarray(obj)`; an object that only speaks DLPack (`__dlpack__`
/// without `__array__`, e.g. a CPU tensor of a framework NumPy does not
/// know) through `numpy.from_dlpack`. Tensors on a GPU are refused by
/// NumPy with its own message.
pub fn asarray<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let np = numpy(obj.py())?;
    let dlpack_only = obj.hasattr("__dlpack__")?
        && !obj.hasattr("__array__")?
        && !obj.hasattr("__array_interface__")?
        && !obj.is_instance(&np.getattr("ndarray")?)?;
    if dlpack_only {
        return np.call_method1("from_dlpack", (obj,));
    }
    np.call_method1("asarray", (obj,))
}

/// Whether `obj` is a list or tuple (of images), not an array.
pub fn is_sequence_of_images(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>()
}

/// `(kind, itemsize)` of an array's dtype (`('f', 4)` for `float32`).
fn dtype_of(arr: &Bound<'_, PyAny>) -> PyResult<(char, usize)> {
    let dtype = arr.getattr("dtype")?;
    let kind: String = dtype.getattr("kind")?.extract()?;
    let size: usize = dtype.getattr("itemsize")?.extract()?;
    Ok((kind.chars().next().unwrap_or('?'), size))
}

fn dtype_name(arr: &Bound<'_, PyAny>) -> String {
    arr.getattr("dtype").and_then(|d| d.str()).map(|s| s.to_string()).unwrap_or_else(|_| "?".into())
}

/// Refuse an array whose shape claims more values than any input may hold
/// (a broadcast view of `10^10` voxels), before it is copied or read.
fn check_size(arr: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    use crate::errors::IntoPy;
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    confseg::alloc::check_elements(what, &shape).map(drop).py()
}

/// Refuse 64-bit integers that `float64` does not hold exactly (beyond
/// 2^53), as the CLI refuses them in a file, instead of rounding them.
fn check_exact(arr: &Bound<'_, PyAny>, kind: char, what: &str) -> PyResult<()> {
    fn first<T: Copy + std::fmt::Display>(
        a: ndarray::ArrayViewD<'_, T>,
        exact: impl Fn(T) -> bool,
    ) -> Option<(String, Vec<usize>)> {
        a.indexed_iter().find(|(_, &v)| !exact(v)).map(|(i, v)| (v.to_string(), i.slice().to_vec()))
    }
    let bad = if kind == 'i' {
        let a = typed::<i64>(arr, "int64")?;
        first(a.as_array(), |v| (v as f64) as i128 == i128::from(v))
    } else {
        let a = typed::<u64>(arr, "uint64")?;
        first(a.as_array(), |v| (v as f64) as u128 == u128::from(v))
    };
    match bad {
        Some((v, index)) => Err(crate::errors::value_error(format!(
            "{}: value {v} at index {index:?} cannot be represented exactly as float64; \
             give float64 scores (or integers of at most 2^53)",
            crate::one_line(what)
        ))),
        None => Ok(()),
    }
}

/// The float type scores are computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreType {
    F32,
    F64,
}

/// The float type that holds an array's values exactly (see the module docs).
pub fn score_type(arr: &Bound<'_, PyAny>, what: &str) -> PyResult<ScoreType> {
    check_size(arr, what)?;
    if let (kind @ ('i' | 'u'), 8) = dtype_of(arr)? {
        check_exact(arr, kind, what)?;
    }
    Ok(match dtype_of(arr)? {
        ('f', 8) => ScoreType::F64,
        ('f', 4 | 2) | ('b', _) | ('i' | 'u', 1 | 2) => ScoreType::F32,
        ('i' | 'u', _) => ScoreType::F64,
        _ => {
            return Err(type_error(format!(
                "{what} of dtype {} are not supported; give real numbers (float32, float64, integers, bool)",
                dtype_name(arr)
            )))
        }
    })
}

/// A score array in its float type.
pub enum Scores<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

impl Scores<'_> {
    pub fn ndim(&self) -> usize {
        match self {
            Scores::F32(a) => a.ndim(),
            Scores::F64(a) => a.ndim(),
        }
    }
}

/// A typed read-only view of `arr` as `T`, converted (`astype`) only when
/// its dtype or byte order is not `T`'s.
fn typed<'py, T: numpy::Element>(
    arr: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let a = match arr.cast::<PyArrayDyn<T>>() {
        Ok(a) => a.clone(),
        Err(_) => arr.call_method1("astype", (name,))?.cast_into::<PyArrayDyn<T>>()?,
    };
    Ok(a.try_readonly()?)
}

/// A `bool` or `uint8` array as its bytes (a `bool` array viewed as
/// `uint8`, without copying or converting: the mask rule then sees every byte).
fn bytes<'py>(arr: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, u8>> {
    let a = match dtype_of(arr)? {
        ('b', _) => arr.call_method1("view", ("uint8",))?,
        _ => arr.clone(),
    };
    typed::<u8>(&a, "uint8")
}

/// `arr` (already an ndarray) as scores of type `t`.
pub fn cast_scores<'py>(arr: &Bound<'py, PyAny>, t: ScoreType) -> PyResult<Scores<'py>> {
    Ok(match t {
        ScoreType::F32 => Scores::F32(typed::<f32>(arr, "float32")?),
        ScoreType::F64 => Scores::F64(typed::<f64>(arr, "float64")?),
    })
}

/// Any array-like as scores in their float type.
pub fn scores<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<(Scores<'py>, Bound<'py, PyAny>)> {
    let arr = asarray(obj)?;
    let t = score_type(&arr, what)?;
    Ok((cast_scores(&arr, t)?, arr))
}

/// The element type masks are read as. NumPy `bool` arrays are read as
/// their bytes (`uint8`): a byte other than 0 or 1 (a `uint8` array viewed
/// as `bool`) would be undefined behaviour as a Rust `bool`, and is refused
/// by the mask rule instead, as the CLI refuses it in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskType {
    U8,
    F64,
}

pub fn mask_type(arr: &Bound<'_, PyAny>, what: &str) -> PyResult<MaskType> {
    check_size(arr, what)?;
    Ok(match dtype_of(arr)? {
        ('b', _) | ('u', 1) => MaskType::U8,
        ('i' | 'u' | 'f', _) => MaskType::F64,
        _ => {
            return Err(type_error(format!(
                "{what} of dtype {} are not supported; give 0/1 masks (bool, uint8, integers or floats)",
                dtype_name(arr)
            )))
        }
    })
}

/// A mask array in its element type; with an ignore label, read by the
/// library's [`confseg::mask::Coding`] into voxels (object, background,
/// ignored).
pub enum Masks<'py> {
    U8(PyReadonlyArrayDyn<'py, u8>),
    F64(PyReadonlyArrayDyn<'py, f64>),
    Voxels(ndarray::ArrayD<confseg::mask::Voxel>),
}

pub fn cast_masks<'py>(arr: &Bound<'py, PyAny>, t: MaskType) -> PyResult<Masks<'py>> {
    Ok(match t {
        MaskType::U8 => Masks::U8(bytes(arr)?),
        MaskType::F64 => Masks::F64(typed::<f64>(arr, "float64")?),
    })
}

/// Any array-like as masks.
pub fn masks<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Masks<'py>> {
    let arr = asarray(obj)?;
    let t = mask_type(&arr, what)?;
    cast_masks(&arr, t)
}

/// Any array-like as masks read with `coding` (as they are without an
/// ignore value; the consumers check them).
pub fn masks_coded<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    coding: &confseg::mask::Coding,
) -> PyResult<Masks<'py>> {
    use crate::errors::IntoPy;
    let m = masks(obj, what)?;
    if coding.ignore().is_none() {
        return Ok(m);
    }
    Ok(Masks::Voxels(match &m {
        Masks::U8(a) => coding.read(&a.as_array()).py()?,
        Masks::F64(a) => coding.read(&a.as_array()).py()?,
        Masks::Voxels(v) => v.clone(),
    }))
}

/// A list of score images, all in one float type (`float64` if any needs it).
pub enum ScoreList<'py> {
    F32(Vec<PyReadonlyArrayDyn<'py, f32>>),
    F64(Vec<PyReadonlyArrayDyn<'py, f64>>),
}

pub fn score_list<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<ScoreList<'py>> {
    let arrays: Vec<Bound<'py, PyAny>> = obj.try_iter()?.map(|x| asarray(&x?)).collect::<PyResult<_>>()?;
    let mut t = ScoreType::F32;
    for a in &arrays {
        if score_type(a, what)? == ScoreType::F64 {
            t = ScoreType::F64;
        }
    }
    Ok(match t {
        ScoreType::F32 => {
            ScoreList::F32(arrays.iter().map(|a| typed::<f32>(a, "float32")).collect::<PyResult<_>>()?)
        }
        ScoreType::F64 => {
            ScoreList::F64(arrays.iter().map(|a| typed::<f64>(a, "float64")).collect::<PyResult<_>>()?)
        }
    })
}

/// A list of masks, all of one element type (`float64` unless all are
/// `bool` or `uint8`, read as bytes).
pub enum MaskList<'py> {
    U8(Vec<PyReadonlyArrayDyn<'py, u8>>),
    F64(Vec<PyReadonlyArrayDyn<'py, f64>>),
    Voxels(Vec<ndarray::ArrayD<confseg::mask::Voxel>>),
}

pub fn mask_list<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<MaskList<'py>> {
    let arrays: Vec<Bound<'py, PyAny>> = obj.try_iter()?.map(|x| asarray(&x?)).collect::<PyResult<_>>()?;
    let types: Vec<MaskType> = arrays.iter().map(|a| mask_type(a, what)).collect::<PyResult<_>>()?;
    let t = if types.iter().all(|&t| t == MaskType::U8) { MaskType::U8 } else { MaskType::F64 };
    Ok(match t {
        MaskType::U8 => MaskList::U8(arrays.iter().map(bytes).collect::<PyResult<_>>()?),
        MaskType::F64 => MaskList::F64(arrays.iter().map(|a| typed(a, "float64")).collect::<PyResult<_>>()?),
    })
}

/// [`mask_list`] read with `coding` (as it is without an ignore value).
pub fn mask_list_coded<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    coding: &confseg::mask::Coding,
) -> PyResult<MaskList<'py>> {
    use crate::errors::IntoPy;
    let l = mask_list(obj, what)?;
    if coding.ignore().is_none() {
        return Ok(l);
    }
    Ok(MaskList::Voxels(match &l {
        MaskList::U8(v) => {
            v.iter().map(|a| coding.read(&a.as_array())).collect::<confseg::Result<_>>().py()?
        }
        MaskList::F64(v) => {
            v.iter().map(|a| coding.read(&a.as_array())).collect::<confseg::Result<_>>().py()?
        }
        MaskList::Voxels(v) => v.clone(),
    }))
}

/// Run `$body` with `$v` bound to the array view of a [`Scores`].
#[macro_export]
macro_rules! with_scores {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            $crate::arrays::Scores::F32(a) => {
                let $v = a.as_array();
                $body
            }
            $crate::arrays::Scores::F64(a) => {
                let $v = a.as_array();
                $body
            }
        }
    };
}

/// Run `$body` with `$v` bound to the array view of a [`Masks`].
#[macro_export]
macro_rules! with_masks {
    ($m:expr, $v:ident => $body:expr) => {
        match $m {
            $crate::arrays::Masks::U8(a) => {
                let $v = a.as_array();
                $body
            }
            $crate::arrays::Masks::F64(a) => {
                let $v = a.as_array();
                $body
            }
            $crate::arrays::Masks::Voxels(a) => {
                let $v = a.view();
                $body
            }
        }
    };
}

/// Run `$body` with `$v` bound to the list of views of a [`ScoreList`].
#[macro_export]
macro_rules! with_score_list {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            $crate::arrays::ScoreList::F32(l) => {
                let $v: Vec<_> = l.iter().map(|a| a.as_array()).collect();
                $body
            }
            $crate::arrays::ScoreList::F64(l) => {
                let $v: Vec<_> = l.iter().map(|a| a.as_array()).collect();
                $body
            }
        }
    };
}

/// Run `$body` with `$v` bound to the list of views of a [`MaskList`].
#[macro_export]
macro_rules! with_mask_list {
    ($m:expr, $v:ident => $body:expr) => {
        match $m {
            $crate::arrays::MaskList::U8(l) => {
                let $v: Vec<_> = l.iter().map(|a| a.as_array()).collect();
                $body
            }
            $crate::arrays::MaskList::F64(l) => {
                let $v: Vec<_> = l.iter().map(|a| a.as_array()).collect();
                $body
            }
            $crate::arrays::MaskList::Voxels(l) => {
                let $v: Vec<_> = l.iter().map(|a| a.view()).collect();
                $body
            }
        }
    };
}

/// A computation over labelled images given as one image, a batch-first
/// stack or a list, in any of the accepted dtypes (see [`labelled`]).
pub trait PerImage: Sync {
    /// The result.
    type Out: Send;
    /// One image or a stack (`lay`), borrowed.
    fn views<A: confseg::float::Float, M: confseg::mask::MaskValue>(
        &self,
        s: ndarray::ArrayViewD<'_, A>,
        m: ndarray::ArrayViewD<'_, M>,
        lay: crate::layout::Layout,
        sp: &crate::layout::SpacingArg,
    ) -> confseg::Result<Self::Out>;
    /// A list of images of any shapes, borrowed.
    fn lists<A: confseg::float::Float, M: confseg::mask::MaskValue>(
        &self,
        s: &[ndarray::ArrayViewD<'_, A>],
        m: &[ndarray::ArrayViewD<'_, M>],
        sp: &crate::layout::SpacingArg,
    ) -> confseg::Result<Self::Out>;
}

/// Run `job` on `scores` and `masks` (one image, a batch-first stack, or
/// lists of images; `names` for messages), read without copies where the
/// dtype allows and without the GIL. `layout_of(ndim, image_ndim)` tells
/// one image from a stack; a per-image spacing means a stack.
#[allow(clippy::too_many_arguments)]
pub fn labelled<J: PerImage>(
    py: Python<'_>,
    job: &J,
    (scores, masks): (&Bound<'_, PyAny>, &Bound<'_, PyAny>),
    coding: &confseg::mask::Coding,
    names: (&str, &str),
    sp: &crate::layout::SpacingArg,
    layout_of: impl Fn(usize, Option<usize>) -> PyResult<crate::layout::Layout>,
    image_ndim: Option<usize>,
) -> PyResult<J::Out> {
    use crate::errors::IntoPy;
    use crate::layout::{Layout, SpacingArg};
    if is_sequence_of_images(scores) {
        let s = score_list(scores, names.0)?;
        let m = mask_list_coded(masks, names.1, coding)?;
        crate::with_score_list!(&s, sv => crate::with_mask_list!(&m, mv => crate::interrupt::detach(py, || job.lists(&sv, &mv, sp))))
            .py()
    } else {
        let (s, _) = self::scores(scores, names.0)?;
        let m = masks_coded(masks, names.1, coding)?;
        let lay = match sp {
            SpacingArg::PerImage(_) => Layout::Stack,
            _ => layout_of(s.ndim(), sp.ndim().or(image_ndim))?,
        };
        crate::with_scores!(&s, sv => crate::with_masks!(&m, mv => crate::interrupt::detach(py, || job.views(sv, mv, lay, sp))))
            .py()
    }
}
