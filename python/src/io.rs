//! File readers of the library: `.npy` stacks, NIfTI volumes, per-subject cohorts.

use std::path::PathBuf;
use std::sync::Arc;

use confseg::image::Affine;
use confseg::io::cohort::{Cohort, Pairing};
use confseg::io::{self as lio, nifti, NpyStack, Precision, ReadFloat};
use ndarray::ArrayD;
use numpy::{PyArray, PyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyType};

use crate::args::{coding_arg, precision_arg};
use crate::errors::{value_error, IntoPy};
use crate::layout::spacing_tuple;

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "float32",
        Precision::F64 => "float64",
    }
}

/// Array `a` as a NumPy array (no copy).
fn np<'py, A: numpy::Element>(py: Python<'py>, a: ArrayD<A>) -> Bound<'py, PyAny> {
    PyArray::from_owned_array(py, a).into_any()
}

fn affine_array<'py>(py: Python<'py>, a: &Affine) -> Bound<'py, PyArray2<f64>> {
    let rows: Vec<Vec<f64>> = a.iter().map(|r| r.to_vec()).collect();
    PyArray2::from_vec2(py, &rows).expect("4x4 rows")
}

/// Read a ``.npy`` file of scores (one image or a stack, any shape) with
/// the library's reader (any common dtype, either byte order; errors name
/// the file), in the narrowest float type that holds its values exactly
/// (``float32`` for ``float32``/``float16``/8- and 16-bit integers/``bool``,
/// ``float64`` otherwise), as ``confseg`` computes on them.
///
/// ``read_npy(path) -> numpy.ndarray``
#[pyfunction]
pub fn read_npy<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let info = crate::interrupt::detach(py, || lio::image_info(&path)).py()?;
    match Precision::of(info.dtype) {
        Precision::F32 => Ok(np(py, crate::interrupt::detach(py, || lio::read_image::<f32>(&path)).py()?)),
        Precision::F64 => Ok(np(py, crate::interrupt::detach(py, || lio::read_image::<f64>(&path)).py()?)),
    }
}

/// Read a ``.npy`` mask or label map (one image or a stack, any shape;
/// ``bool``, integers or floats) as ``uint8`` 0/1; ``labels``: the label
/// values that are the object (default: a 0/1 mask, other values are an error).
///
/// ``read_npy_mask(path, labels=None, ignore_label=None) -> numpy.ndarray``
/// (with ``ignore_label``, ignored voxels are 2)
#[pyfunction]
#[pyo3(signature = (path, labels=None, ignore_label=None))]
pub fn read_npy_mask<'py>(
    py: Python<'py>,
    path: PathBuf,
    labels: Option<Vec<i64>>,
    ignore_label: Option<i64>,
) -> PyResult<Bound<'py, PyAny>> {
    let labels = coding_arg(labels, ignore_label)?;
    Ok(np(py, crate::interrupt::detach(py, || lio::read_mask_image(&path, &labels)).py()?))
}

/// A batch-first ``.npy`` stack ``(N, spatial...)`` opened by its header;
/// images are read on demand (``stack[i]``, iteration), so a large stack
/// streams with one image in memory.
///
/// ``read_npy_stack(path) -> NpyStack``
#[pyclass(module = "confseg", name = "NpyStack", frozen)]
pub struct PyNpyStack {
    stack: NpyStack,
}

impl PyNpyStack {
    fn image<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyAny>> {
        let s = &self.stack;
        Ok(match s.precision() {
            Precision::F32 => np(py, crate::interrupt::detach(py, || s.read_scores::<f32>(i)).py()?),
            Precision::F64 => np(py, crate::interrupt::detach(py, || s.read_scores::<f64>(i)).py()?),
        })
    }

    fn index(&self, i: isize) -> PyResult<usize> {
        let n = self.stack.len();
        let j = if i < 0 { i + n as isize } else { i };
        if j < 0 || j as usize >= n {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "image index {i} is out of range for a stack of {n} images"
            )));
        }
        Ok(j as usize)
    }
}

/// Open a ``.npy`` stack (see ``NpyStack``).
#[pyfunction]
pub fn read_npy_stack(path: PathBuf) -> PyResult<PyNpyStack> {
    Ok(PyNpyStack { stack: NpyStack::open(&path, "scores").py()? })
}

#[pymethods]
impl PyNpyStack {
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        read_npy_stack(path)
    }

    fn __len__(&self) -> usize {
        self.stack.len()
    }

    /// Image ``i`` in the file's precision (``float32`` or ``float64``).
    fn __getitem__<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        let i = self.index(i)?;
        self.image(py, i)
    }

    /// Mask ``i`` as ``uint8`` 0/1 (``labels``: label values that are the
    /// object; with ``ignore_label``, ignored voxels are 2).
    #[pyo3(signature = (i, labels=None, ignore_label=None))]
    fn mask<'py>(
        &self,
        py: Python<'py>,
        i: isize,
        labels: Option<Vec<i64>>,
        ignore_label: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let i = self.index(i)?;
        let labels = coding_arg(labels, ignore_label)?;
        Ok(np(py, crate::interrupt::detach(py, || self.stack.read_mask(i, &labels)).py()?))
    }

    /// The whole stack in the file's precision.
    fn read<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        read_npy(py, self.stack.path().to_path_buf())
    }

    /// The file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.stack.path().to_path_buf()
    }

    /// ``(N, spatial...)``.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        std::iter::once(self.stack.len()).chain(self.stack.image_shape().iter().copied()).collect()
    }

    /// The shape of one image.
    #[getter]
    fn image_shape(&self) -> Vec<usize> {
        self.stack.image_shape().to_vec()
    }

    /// The file's dtype (``"float32"``, ``"uint8"``, ...).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.stack.info().dtype.name()
    }

    /// The float type images are read in.
    #[getter]
    fn precision(&self) -> &'static str {
        precision_name(self.stack.precision())
    }

    fn __iter__(slf: Bound<'_, Self>) -> NpyImages {
        NpyImages { stack: slf.unbind(), next: 0 }
    }

    fn __repr__(&self) -> String {
        format!(
            "NpyStack({:?}, shape={:?}, dtype={})",
            self.stack.path().display(),
            self.shape(),
            self.dtype()
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> (Bound<'py, PyType>, (PathBuf,)) {
        (slf.get_type(), (slf.get().stack.path().to_path_buf(),))
    }
}

/// Iterator over the images of an `NpyStack`.
#[pyclass(module = "confseg")]
pub struct NpyImages {
    stack: Py<PyNpyStack>,
    next: usize,
}

#[pymethods]
impl NpyImages {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let stack = self.stack.get();
        if self.next >= stack.stack.len() {
            return Ok(None);
        }
        let image = stack.image(py, self.next)?;
        self.next += 1;
        Ok(Some(image))
    }
}

/// `(array, spacing, affine)` of a NIfTI file.
type Volume<'py> = (Bound<'py, PyAny>, Option<Vec<f64>>, Bound<'py, PyArray2<f64>>);

fn header_parts<'py>(
    py: Python<'py>,
    h: &nifti::NiftiHeader,
) -> (Option<Vec<f64>>, Bound<'py, PyArray2<f64>>) {
    (spacing_tuple(h.spacing()), affine_array(py, h.affine()))
}

/// Read a NIfTI-1/-2 volume (``.nii``, ``.nii.gz``) with the library's
/// reader: ``(scores, spacing, affine)``, the array indexed ``(x, y, z, ...)``
/// like nibabel's ``get_fdata()``, in the narrowest float type that holds
/// the values exactly (or ``precision``), the spacing from ``pixdim`` and
/// the 4x4 voxel-to-world affine.
///
/// ``read_nifti(path, precision=None) -> (numpy.ndarray, tuple, numpy.ndarray)``
#[pyfunction]
#[pyo3(signature = (path, precision=None))]
pub fn read_nifti<'py>(py: Python<'py>, path: PathBuf, precision: Option<&str>) -> PyResult<Volume<'py>> {
    let p = match precision_arg(precision)? {
        Some(p) => p,
        None => crate::interrupt::detach(py, || nifti::read_header(&path)).py()?.precision(),
    };
    let (a, h) = match p {
        Precision::F32 => {
            let (a, h) = crate::interrupt::detach(py, || nifti::read_scores::<f32>(&path)).py()?;
            (np(py, a), h)
        }
        Precision::F64 => {
            let (a, h) = crate::interrupt::detach(py, || nifti::read_scores::<f64>(&path)).py()?;
            (np(py, a), h)
        }
    };
    let (spacing, affine) = header_parts(py, &h);
    Ok((a, spacing, affine))
}

/// Read a NIfTI mask or label map as ``uint8`` 0/1: ``(mask, spacing, affine)``;
/// ``labels``: the label values that are the object (default: a 0/1 mask).
///
/// ``read_nifti_mask(path, labels=None, ignore_label=None) -> (numpy.ndarray, tuple, numpy.ndarray)``
/// (with ``ignore_label``, ignored voxels are 2)
#[pyfunction]
#[pyo3(signature = (path, labels=None, ignore_label=None))]
pub fn read_nifti_mask<'py>(
    py: Python<'py>,
    path: PathBuf,
    labels: Option<Vec<i64>>,
    ignore_label: Option<i64>,
) -> PyResult<Volume<'py>> {
    let labels = coding_arg(labels, ignore_label)?;
    let (m, h) = crate::interrupt::detach(py, || nifti::read_mask(&path, &labels)).py()?;
    let (spacing, affine) = header_parts(py, &h);
    Ok((np(py, m), spacing, affine))
}

/// How a cohort was found, to find it again after unpickling.
#[derive(Clone)]
enum Origin {
    Files { scores: String, masks: Option<String>, scores_suffix: String, masks_suffix: String },
    Manifest(PathBuf),
}

/// Per-subject files: one score image (and mask) per subject, as
/// segmentation networks leave them, each with its own shape and (NIfTI)
/// spacing and affine. Found in folders, by glob patterns, or in a CSV
/// manifest (``id,scores,mask[,spacing]``); score and mask files pair up by
/// subject ID (the file name without extension and suffix).
///
/// ``read_cohort(scores=None, masks=None, *, manifest=None, scores_suffix="", masks_suffix="") -> Cohort``
///
/// ``len(cohort)``, ``cohort.ids``, ``cohort.subjects`` (dicts),
/// ``cohort.read(i)`` -> ``(scores, mask, spacing, affine)``; calibrate
/// with ``Calibrator.statistics_cohort(cohort)``. Pickles (by finding the
/// files again: keep them on storage that every worker sees).
#[pyclass(module = "confseg", name = "Cohort", frozen)]
pub struct PyCohort {
    pub cohort: Arc<Cohort>,
    origin: Origin,
}

fn open_cohort(origin: Origin) -> confseg::Result<PyCohort> {
    let cohort = match &origin {
        Origin::Files { scores, masks, scores_suffix, masks_suffix } => Cohort::discover(
            scores,
            masks.as_deref(),
            &Pairing::new(scores_suffix.clone(), masks_suffix.clone()),
        )?,
        Origin::Manifest(p) => Cohort::from_manifest(p, false)?,
    };
    Ok(PyCohort { cohort: Arc::new(cohort), origin })
}

/// Find a cohort's subjects (see ``Cohort``).
#[pyfunction]
#[pyo3(signature = (scores=None, masks=None, *, manifest=None, scores_suffix="", masks_suffix=""))]
pub fn read_cohort(
    py: Python<'_>,
    scores: Option<String>,
    masks: Option<String>,
    manifest: Option<PathBuf>,
    scores_suffix: &str,
    masks_suffix: &str,
) -> PyResult<PyCohort> {
    let origin = match (scores, manifest) {
        (Some(scores), None) => Origin::Files {
            scores,
            masks,
            scores_suffix: scores_suffix.to_owned(),
            masks_suffix: masks_suffix.to_owned(),
        },
        (None, Some(m)) if masks.is_none() => Origin::Manifest(m),
        _ => {
            return Err(value_error(
                "give scores (a folder, glob pattern or file) and optionally masks, or a manifest",
            ))
        }
    };
    crate::interrupt::detach(py, || open_cohort(origin)).py()
}

#[pymethods]
impl PyCohort {
    fn __len__(&self) -> usize {
        self.cohort.len()
    }

    /// The subject IDs, in order.
    #[getter]
    fn ids(&self) -> Vec<String> {
        self.cohort.subjects().iter().map(|s| s.id.clone()).collect()
    }

    /// The subjects: dicts with ``id``, ``scores``, ``mask`` (paths) and
    /// ``spacing`` (from the manifest, or ``None``).
    #[getter]
    fn subjects<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for s in self.cohort.subjects() {
            let d = PyDict::new(py);
            d.set_item("id", &s.id)?;
            d.set_item("scores", &s.scores)?;
            d.set_item("mask", &s.mask)?;
            d.set_item("spacing", s.spacing.as_ref().and_then(spacing_tuple))?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// The float type that holds every subject's scores exactly (reads every header).
    #[getter]
    fn precision(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(precision_name(crate::interrupt::detach(py, || self.cohort.precision()).py()?))
    }

    /// Subject ``i``: ``(scores, mask, spacing, affine)``; ``mask`` is
    /// ``uint8`` 0/1 or ``None`` without a mask file, ``spacing`` and
    /// ``affine`` ``None`` for a ``.npy`` file (the default spacing applies).
    #[pyo3(signature = (i, labels=None, precision=None, ignore_label=None))]
    #[allow(clippy::type_complexity)]
    fn read<'py>(
        &self,
        py: Python<'py>,
        i: usize,
        labels: Option<Vec<i64>>,
        precision: Option<&str>,
        ignore_label: Option<i64>,
    ) -> PyResult<(
        Bound<'py, PyAny>,
        Option<Bound<'py, PyAny>>,
        Option<Vec<f64>>,
        Option<Bound<'py, PyArray2<f64>>>,
    )> {
        let labels = coding_arg(labels, ignore_label)?;
        let c = &self.cohort;
        let p = match precision_arg(precision)? {
            Some(p) => p,
            None => crate::interrupt::detach(py, || c.info(i)).py()?.precision,
        };
        fn scores<A: ReadFloat>(
            c: &Cohort,
            i: usize,
        ) -> confseg::Result<(ArrayD<A>, Option<confseg::image::Geometry>)> {
            c.read_scores::<A>(i)
        }
        let (s, g) = match p {
            Precision::F32 => {
                let (a, g) = crate::interrupt::detach(py, || scores::<f32>(c, i)).py()?;
                (np(py, a), g)
            }
            Precision::F64 => {
                let (a, g) = crate::interrupt::detach(py, || scores::<f64>(c, i)).py()?;
                (np(py, a), g)
            }
        };
        let mask = match c.subjects().get(i).and_then(|s| s.mask.as_ref()) {
            Some(_) => Some(np(py, crate::interrupt::detach(py, || c.read_mask(i, &labels)).py()?)),
            None => None,
        };
        let spacing = g.as_ref().and_then(|g| spacing_tuple(g.spacing()));
        let affine = g.as_ref().and_then(|g| g.affine().map(|a| affine_array(py, a)));
        Ok((s, mask, spacing, affine))
    }

    fn __repr__(&self) -> String {
        format!("Cohort({} subjects)", self.cohort.len())
    }

    #[classmethod]
    #[pyo3(signature = (scores, masks, manifest, scores_suffix, masks_suffix))]
    fn _reopen(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        scores: Option<String>,
        masks: Option<String>,
        manifest: Option<PathBuf>,
        scores_suffix: String,
        masks_suffix: String,
    ) -> PyResult<Self> {
        let origin = match manifest {
            Some(m) => Origin::Manifest(m),
            None => Origin::Files {
                scores: scores.ok_or_else(|| value_error("no scores"))?,
                masks,
                scores_suffix,
                masks_suffix,
            },
        };
        crate::interrupt::detach(py, || open_cohort(origin)).py()
    }

    #[allow(clippy::type_complexity)]
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Option<String>, Option<String>, Option<PathBuf>, String, String))>
    {
        let f = slf.get_type().getattr("_reopen")?;
        let args = match &slf.get().origin {
            Origin::Files { scores, masks, scores_suffix, masks_suffix } => {
                (Some(scores.clone()), masks.clone(), None, scores_suffix.clone(), masks_suffix.clone())
            }
            Origin::Manifest(p) => (None, None, Some(p.clone()), String::new(), String::new()),
        };
        Ok((f, args))
    }
}

/// A 0/1 mask from any array-like, copied (another thread may change the
/// caller's array while the GIL is released) and checked by the library's
/// mask rule.
fn owned_mask(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ArrayD<u8>> {
    Ok(match crate::arrays::masks(obj, what)? {
        crate::arrays::Masks::U8(a) => confseg::alloc::try_copy(&a.as_array(), "the mask").py()?,
        crate::arrays::Masks::F64(a) => {
            let a = confseg::alloc::try_copy(&a.as_array(), "the mask").py()?;
            let ones = a.mapv(|v| u8::from(v == 1.0));
            if let Some((index, &v)) = a.indexed_iter().find(|(_, &v)| v != 0.0 && v != 1.0) {
                use ndarray::Dimension;
                return Err(value_error(format!(
                    "{what}: value {v} at index {:?}; a mask holds 0 and 1",
                    index.as_array_view().to_vec()
                )));
            }
            ones
        }
        crate::arrays::Masks::Voxels(_) => {
            return Err(value_error(format!("{what}: a set has no ignored voxels")))
        }
    })
}

/// Write a set (or any 0/1 mask) as a ``uint8`` NIfTI file with the header
/// of ``like`` (a NIfTI file of the same subject: spacing, affine, axis
/// codes), so that it opens over the scan in a viewer. Written atomically.
///
/// ``write_nifti_mask(path, mask, like) -> None``
#[pyfunction]
pub fn write_nifti_mask(
    py: Python<'_>,
    path: PathBuf,
    mask: &Bound<'_, PyAny>,
    like: PathBuf,
) -> PyResult<()> {
    let m = owned_mask(mask, "mask")?;
    crate::interrupt::detach(py, || nifti::write_mask(&path, &m, &nifti::read_header(&like)?)).py()
}

/// Write the viewer label map of a subject's sets (0 outside, 1 the band
/// ``outer`` minus ``inner``, 2 the inner set) as ``uint8`` NIfTI with the
/// header of ``like``; with ``colour_tables=True`` also the ITK-SNAP
/// (``confseg_sets.itksnap.txt``) and 3D Slicer (``confseg_sets.ctbl``)
/// colour tables in the same folder, as ``confseg predict --label-map-out``
/// writes them. All files are published together or not at all.
///
/// ``write_nifti_label_map(path, inner, outer, like, colour_tables=True) -> None``
#[pyfunction]
#[pyo3(signature = (path, inner, outer, like, colour_tables=true))]
pub fn write_nifti_label_map(
    py: Python<'_>,
    path: PathBuf,
    inner: &Bound<'_, PyAny>,
    outer: &Bound<'_, PyAny>,
    like: PathBuf,
    colour_tables: bool,
) -> PyResult<()> {
    let (i, o) = (owned_mask(inner, "inner")?, owned_mask(outer, "outer")?);
    crate::interrupt::detach(py, || {
        let sets = confseg::Sets::from_masks(&i, &o)?;
        let mut run = lio::Publication::new();
        run.stage(nifti::label_map_output(&path, &sets.label_map(), &nifti::read_header(&like)?)?)?;
        if colour_tables {
            lio::viewer::stage_tables(path.parent().unwrap_or(std::path::Path::new("")), &mut run)?;
        }
        run.publish()
    })
    .py()
}

/// Write scores (``float32`` or ``float64``, indexed ``(x, y, z, ...)`` like
/// ``read_nifti`` returns them) as NIfTI-1: with the header of ``like`` (a
/// NIfTI file of the same subject: spacing, affine), or with ``spacing``
/// (and ``affine``, 4x4) given, or with unit spacing. Written atomically.
///
/// ``write_nifti(path, scores, like=None, spacing=None, affine=None) -> None``
#[pyfunction]
#[pyo3(signature = (path, scores, like=None, spacing=None, affine=None))]
pub fn write_nifti(
    py: Python<'_>,
    path: PathBuf,
    scores: &Bound<'_, PyAny>,
    like: Option<PathBuf>,
    spacing: Option<Vec<f64>>,
    affine: Option<[[f64; 4]; 4]>,
) -> PyResult<()> {
    if like.is_some() && (spacing.is_some() || affine.is_some()) {
        return Err(value_error("give like (a NIfTI file whose header to copy) or spacing/affine, not both"));
    }
    let header = move |shape: &[usize]| -> confseg::Result<nifti::NiftiHeader> {
        if let Some(like) = &like {
            return nifti::read_header(like);
        }
        let spacing = match &spacing {
            Some(s) => confseg::Spacing::new(s.clone())?,
            None => confseg::Spacing::new(vec![1.0; shape.len().min(3)])?,
        };
        let mut g = confseg::image::Geometry::new(spacing);
        if let Some(a) = affine {
            g = g.with_affine(a)?;
        }
        nifti::NiftiHeader::new(shape, &g)
    };
    match crate::arrays::scores(scores, "scores")?.0 {
        crate::arrays::Scores::F32(a) => {
            let a = confseg::alloc::try_copy(&a.as_array(), "the scores").py()?;
            crate::interrupt::detach(py, || nifti::write_scores(&path, &a, &header(a.shape())?)).py()
        }
        crate::arrays::Scores::F64(a) => {
            let a = confseg::alloc::try_copy(&a.as_array(), "the scores").py()?;
            crate::interrupt::detach(py, || nifti::write_scores(&path, &a, &header(a.shape())?)).py()
        }
    }
}
