//! Module-level functions: transforms, synthetic data, validation.

use std::sync::Arc;

use confseg::evaluate::{Geometry, Method, MethodKind, Pool, Splits, Validation};
use confseg::float::Float;
use confseg::synthetic::Synthetic;
use confseg::transform::apply_checked;
use confseg::{Alpha, Calibrator, Identity, ScoreTransform, Spacing, TwoClassSoftmax};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use numpy::{PyArray, PyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyRange;
use rayon::prelude::*;

use crate::args::{parse_transform, Cal};
use crate::arrays::{self, Scores};
use crate::errors::{type_error, value_error, IntoPy};
use crate::layout::{layout, one_spacing, spacing_arg, Layout, SpacingArg};
use crate::{json_loads, with_masks, with_scores};

/// A transform's result: the input itself (borrowed by the library), or new values.
enum Out<A> {
    Input,
    Owned(ArrayD<A>),
}

/// Whether a transformed view is `input` itself (same memory and strides).
fn is_input<A>(out: &ndarray::CowArray<'_, A, IxDyn>, input: &ArrayViewD<'_, A>) -> bool {
    out.is_view() && std::ptr::eq(out.as_ptr(), input.as_ptr()) && out.strides() == input.strides()
}

fn transform_views<A: Float>(
    t: &ScoreTransform,
    s: ArrayViewD<'_, A>,
    lay: Layout,
    sp: &SpacingArg,
) -> confseg::Result<Out<A>> {
    match lay {
        Layout::Single => {
            let spacing = sp.for_image(0, 1)?.unwrap_or_else(Spacing::unit);
            let out = apply_checked(t, &s, &spacing)?;
            Ok(if is_input(&out, &s) { Out::Input } else { Out::Owned(out.into_owned()) })
        }
        Layout::Stack => {
            let n = s.len_of(Axis(0));
            let per = (0..n)
                .into_par_iter()
                .map(|i| {
                    let spacing = sp.for_image(i, n)?.unwrap_or_else(Spacing::unit);
                    let image = s.index_axis(Axis(0), i);
                    let out = apply_checked(t, &image, &spacing).map_err(|e| e.in_image(i))?;
                    Ok(if is_input(&out, &image) { None } else { Some(out.into_owned()) })
                })
                .collect::<confseg::Result<Vec<_>>>()?;
            if per.iter().all(Option::is_none) {
                return Ok(Out::Input);
            }
            let mut all: ArrayD<A> = confseg::alloc::try_array(s.raw_dim(), "the transformed stack")?;
            for (i, p) in per.into_iter().enumerate() {
                match p {
                    Some(a) => all.index_axis_mut(Axis(0), i).assign(&a),
                    None => all.index_axis_mut(Axis(0), i).assign(&s.index_axis(Axis(0), i)),
                }
            }
            Ok(Out::Owned(all))
        }
    }
}

/// Apply a score transform, as calibration and prediction do.
///
/// ``transform(scores, transform, spacing=None, ndim=None, mask_threshold=None) -> numpy.ndarray``
///
/// ``transform``: a name such as ``"identity"``, ``"sigmoid"``,
/// ``"distance:chessboard"``, ``"gaussian:2"``, ``"box-outer"``,
/// ``"morphological:footprint=edge"``.
/// ``scores``: one image or a batch-first stack (``ndim`` or the length of
/// ``spacing`` tells which; otherwise 1-2 axes are one image, 3+ a stack),
/// in its own float type (``float32`` stays ``float32``). A transform that
/// leaves the scores as they are (``"identity"``) returns the input array
/// itself, without a copy. NaN in the scores is a ``ValueError``.
#[pyfunction]
#[pyo3(signature = (scores, transform, spacing=None, ndim=None, mask_threshold=None))]
pub fn transform<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    transform: &str,
    spacing: Option<&Bound<'py, PyAny>>,
    ndim: Option<usize>,
    mask_threshold: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let t = parse_transform(transform, mask_threshold)?;
    let sp = spacing_arg(spacing)?;
    let (s, _) = arrays::scores(scores, "scores")?;
    let lay = match sp {
        SpacingArg::PerImage(_) => Layout::Stack,
        _ => layout(s.ndim(), sp.ndim().or(ndim))?,
    };
    match &s {
        Scores::F32(a) => {
            let v = a.as_array();
            match crate::interrupt::detach(py, || transform_views(&t, v, lay, &sp)).py()? {
                Out::Input => Ok((**a).clone().into_any()),
                Out::Owned(x) => Ok(PyArray::from_owned_array(py, x).into_any()),
            }
        }
        Scores::F64(a) => {
            let v = a.as_array();
            match crate::interrupt::detach(py, || transform_views(&t, v, lay, &sp)).py()? {
                Out::Input => Ok((**a).clone().into_any()),
                Out::Owned(x) => Ok(PyArray::from_owned_array(py, x).into_any()),
            }
        }
    }
}

/// One 0/1 mask array as `bool`, by the library's mask rule.
fn set_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ArrayD<bool>> {
    let binary = match arrays::masks(obj, what)? {
        arrays::Masks::U8(a) => confseg::mask::Labels::Binary.binarize(&a.as_array()),
        arrays::Masks::F64(a) => confseg::mask::Labels::Binary.binarize(&a.as_array()),
        arrays::Masks::Voxels(a) => confseg::mask::Labels::Binary.binarize(&a.view()),
    };
    Ok(binary.map_err(|e| value_error(format!("{what}: {e}")))?.mapv(|v| v == 1))
}

/// The volumes and the band width of one image's sets, as
/// ``confseg predict --summary`` writes them per subject.
///
/// ``set_measures(inner, outer, spacing=None) -> dict``
///
/// ``inner``, ``outer``: one image's sets (0/1 arrays of one shape);
/// ``spacing``: the voxel size per axis (default 1). Returns voxel counts
/// ``inner_voxels``, ``band_voxels`` (``outer`` minus ``inner``),
/// ``outer_voxels``, ``voxels``; volumes ``inner_volume``, ``band_volume``,
/// ``outer_volume`` (counts times the voxel volume: mm³ for spacing in mm);
/// ``band_mean_width`` and ``band_max_width``: the distance from each voxel
/// of the outer contour (voxels of ``outer`` with a face neighbour in the
/// image outside it) to the nearest inner voxel, in the units of the
/// spacing, ``None`` when undefined (an empty inner set, an outer set that
/// is empty or the whole image).
#[pyfunction]
#[pyo3(signature = (inner, outer, spacing=None))]
pub fn set_measures<'py>(
    py: Python<'py>,
    inner: &Bound<'py, PyAny>,
    outer: &Bound<'py, PyAny>,
    spacing: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let spacing = one_spacing(spacing)?;
    let sets = confseg::Sets { inner: set_arg(inner, "inner")?, outer: set_arg(outer, "outer")? };
    let m = py.detach(|| sets.measures(&spacing)).py()?;
    let d = pyo3::types::PyDict::new(py);
    d.set_item("voxels", m.voxels)?;
    d.set_item("inner_voxels", m.inner_voxels)?;
    d.set_item("band_voxels", m.band_voxels)?;
    d.set_item("outer_voxels", m.outer_voxels)?;
    d.set_item("inner_volume", m.inner_volume())?;
    d.set_item("band_volume", m.band_volume())?;
    d.set_item("outer_volume", m.outer_volume())?;
    d.set_item("band_mean_width", m.band_width.map(|w| w.mean))?;
    d.set_item("band_max_width", m.band_width.map(|w| w.max))?;
    Ok(d)
}

/// Two-class logits to the foreground probability
/// ``exp(l_1) / (exp(l_0) + exp(l_1))``, removing the class ``axis``
/// (length 2), as ``confseg calibrate --class-axis`` does before the transforms.
///
/// ``two_class_softmax(logits, axis) -> numpy.ndarray``
#[pyfunction]
pub fn two_class_softmax<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    axis: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let (s, _) = arrays::scores(logits, "logits")?;
    let softmax = TwoClassSoftmax::new(Axis(axis));
    with_scores!(&s, v => {
        let p = crate::interrupt::detach(py, || softmax.apply(&v)).py()?;
        Ok(PyArray::from_owned_array(py, p).into_any())
    })
}

/// `(scores, masks)` stacks.
type Labelled<'py> = (Bound<'py, PyArrayDyn<f64>>, Bound<'py, PyArrayDyn<bool>>);

/// `start..stop` of an int `n` (`0..n`) or a `range` with step 1.
fn index_range(obj: &Bound<'_, PyAny>) -> PyResult<std::ops::Range<usize>> {
    if let Ok(n) = obj.extract::<usize>() {
        return Ok(0..n);
    }
    if let Ok(r) = obj.cast::<PyRange>() {
        let (start, stop, step): (usize, usize, isize) =
            (r.getattr("start")?.extract()?, r.getattr("stop")?.extract()?, r.getattr("step")?.extract()?);
        if step != 1 {
            return Err(value_error("indices must be a range with step 1"));
        }
        return Ok(start..stop.max(start));
    }
    Err(type_error(
        "indices must be a count n (images 0..n) or a range(start, stop) of non-negative image indices",
    ))
}

/// Seeded synthetic labelled images (the library's generator of
/// exchangeable test data: smooth noisy logits around random ellipsoidal
/// objects, with boundary errors), generated in parallel.
///
/// ``synthetic(shape, indices, seed=0, noise=None, boundary_error=None) -> (scores, masks)``
///
/// ``shape``: the image shape (any dimension); ``indices``: a count ``n``
/// or a ``range``: image ``i`` depends only on ``(seed, i)``. Returns a
/// ``float64`` stack ``(N, *shape)`` of logits and a ``bool`` stack of masks.
#[pyfunction]
#[pyo3(signature = (shape, indices, seed=0, noise=None, boundary_error=None))]
pub fn synthetic<'py>(
    py: Python<'py>,
    shape: Vec<usize>,
    indices: &Bound<'py, PyAny>,
    seed: u64,
    noise: Option<f64>,
    boundary_error: Option<f64>,
) -> PyResult<Labelled<'py>> {
    let range = index_range(indices)?;
    if shape.is_empty() || shape.contains(&0) {
        return Err(confseg::Error::EmptyImage { image: None, shape }).py();
    }
    let full: Vec<usize> = std::iter::once(range.len()).chain(shape.iter().copied()).collect();
    let values = confseg::alloc::check_elements("synthetic images", &full).py()?;
    // a float64 and a bool per value
    confseg::alloc::ensure_room(values as u128 * 9, "the synthetic images").py()?;
    let mut data = Synthetic::new(IxDyn(&shape)).seed(seed);
    if let Some(x) = noise {
        data = data.noise(x).py()?;
    }
    if let Some(p) = boundary_error {
        data = data.boundary_error(p).py()?;
    }
    let (s, m) = crate::interrupt::detach(py, || Ok(data.stack(range))).py()?;
    Ok((PyArray::from_owned_array(py, s), PyArray::from_owned_array(py, m)))
}

fn pool_raw<A: Float, M: confseg::mask::MaskValue>(
    c: &Cal,
    s: ArrayViewD<'_, A>,
    m: ArrayViewD<'_, M>,
    threshold: f64,
) -> confseg::Result<Pool> {
    Pool::new(c, &s, &m, threshold)
}

fn pool_transformed<A: Float, M: confseg::mask::MaskValue>(
    fi: ArrayViewD<'_, A>,
    fo: ArrayViewD<'_, A>,
    m: ArrayViewD<'_, M>,
    calibrator: &Calibrator<Identity, Identity>,
    threshold: f64,
) -> confseg::Result<Pool> {
    Pool::from_transformed(calibrator, &fi, &fo, &m, threshold)
}

/// Coverage and set sizes over repeated random calibration/test splits of
/// labelled stacks, for the conformal sets and the baselines, on the same
/// splits (``confseg validate``). Every image's statistics are computed
/// once; a split is then a conformal quantile and a count.
///
/// ``validate(scores, masks, *, n_cal, alphas=(0.1,), inner="identity", outer="identity",
/// inner_scores=None, outer_scores=None, n_test=None, repeats=1000, mode="marginal",
/// weights=None, methods=("conformal",), seed=0, geometry_splits=20, spacing=None,
/// mask_threshold=None, delta=None, record_splits=0, risk=None, bound=None, grid=None,
/// inner_tolerance=None, outer_tolerance=None, ignore_label=None) -> list[dict]``
///
/// ``scores``/``masks``: batch-first stacks; or ``scores=None`` with
/// already transformed ``inner_scores`` and ``outer_scores``.
/// ``ignore_label``: the mask value of voxels that count nowhere (not in
/// the statistics, coverage or set sizes).
/// ``inner_tolerance``/``outer_tolerance``: the conformal method is
/// calibrated, and its coverage counted, for the tolerance events (see
/// ``Calibrator``). ``delta``:
/// the conformal method's thresholds take the training-conditional rank
/// (see ``Calibrator.fit``); ``mode="risk-control"`` runs risk control
/// with ``risk``, ``delta``, ``bound`` and ``grid`` as ``Calibrator.fit``
/// takes them (``methods=("risk-control",)`` without that mode: conformal
/// risk control of the missed fraction).
/// ``record_splits``: each report's ``recorded`` lists the first splits'
/// calibration images (indices into the stacks) and thresholds
/// (``lambda_inner``, ``lambda_outer``), to refit a split and compare. ``methods``:
/// ``"conformal"``, ``"risk-control"``, ``"pixelwise"``,
/// ``"morphological-chessboard"``, ``"morphological-cityblock"``. Returns
/// one dict per method and level with the library's report fields
/// (``method``, ``alpha``, ``inner_coverage``, ``outer_coverage``,
/// ``joint_coverage``, spreads ``inner``/``outer``/``joint``,
/// ``too_few_images``, ``efficiency``, ``n_cal``, ``n_test``, ``splits``).
/// ``by_stratum=True``: returns ``{"reports": [...], "by_stratum": [...]}``
/// (``confseg validate --by-stratum --json``): per level, the sets'
/// coverage, set sizes and mean missed / false shares (conformal or
/// risk-control ``mode``) per group (``groups``: one label per
/// image), per quintile of the true object size and per predicted-volume
/// stratum (``strata="predicted-volume=E1,E2,..."`` in voxels, else
/// quintiles), and the lesion-level shares. ``progress``: ``True`` for a
/// tqdm bar of the splits, or a callable ``progress(done, total)``.
#[pyfunction]
#[pyo3(signature = (scores, masks, *, n_cal, alphas=vec![0.1], inner="identity", outer="identity",
    inner_scores=None, outer_scores=None, n_test=None, repeats=1000, mode="marginal", weights=None,
    methods=None, seed=0, geometry_splits=20, spacing=None, mask_threshold=None, delta=None, record_splits=0,
    risk=None, bound=None, grid=None, inner_tolerance=None, outer_tolerance=None, ignore_label=None,
    progress=None, by_stratum=false, groups=None, strata=None))]
#[allow(clippy::too_many_arguments)]
pub fn validate<'py>(
    py: Python<'py>,
    scores: Option<&Bound<'py, PyAny>>,
    masks: &Bound<'py, PyAny>,
    n_cal: usize,
    alphas: Vec<f64>,
    inner: &str,
    outer: &str,
    inner_scores: Option<&Bound<'py, PyAny>>,
    outer_scores: Option<&Bound<'py, PyAny>>,
    n_test: Option<usize>,
    repeats: usize,
    mode: &str,
    weights: Option<(f64, f64)>,
    methods: Option<Vec<String>>,
    seed: u64,
    geometry_splits: usize,
    spacing: Option<&Bound<'py, PyAny>>,
    mask_threshold: Option<f64>,
    delta: Option<f64>,
    record_splits: usize,
    risk: Option<&str>,
    bound: Option<&str>,
    grid: Option<&Bound<'py, PyAny>>,
    inner_tolerance: Option<&Bound<'py, PyAny>>,
    outer_tolerance: Option<&Bound<'py, PyAny>>,
    ignore_label: Option<i64>,
    progress: Option<&Bound<'py, PyAny>>,
    by_stratum: bool,
    groups: Option<&Bound<'py, PyAny>>,
    strata: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    if !by_stratum && (groups.is_some() || strata.is_some()) {
        return Err(value_error("groups= and strata= stratify the diagnostics: give by_stratum=True"));
    }
    let spec = match by_stratum {
        false => None,
        true => {
            let groups = groups.map(crate::groups::groups_arg).transpose()?;
            let strata = strata.map(str::parse::<confseg::groups::Strata>).transpose().py()?;
            Some(
                confseg::evaluate::diagnostics::StrataSpec::new(groups, strata.as_ref(), geometry_splits)
                    .py()?,
            )
        }
    };
    let progress = crate::interrupt::progress_arg(py, progress)?;
    let tolerances = crate::args::tolerances_arg(inner_tolerance, outer_tolerance)?;
    let coding = crate::args::coding_arg(None, ignore_label)?;
    let levels = crate::args::levels_arg(None, mode, weights, None, None, delta, risk, bound, grid)?;
    let methods = methods.unwrap_or_else(|| vec!["conformal".into()]);
    let methods = methods
        .iter()
        .map(|m| Method::new(m.parse::<MethodKind>()?, &levels))
        .collect::<confseg::Result<Vec<_>>>()
        .py()?;
    let alphas = alphas.into_iter().map(|a| Alpha::new(a).py()).collect::<PyResult<Vec<_>>>()?;
    let mut splits = Splits::new(n_cal, repeats, seed).py()?;
    if let Some(t) = n_test {
        splits = splits.with_n_test(t).py()?;
    }
    let geometry = if geometry_splits == 0 { Geometry::Off } else { Geometry::FirstSplits(geometry_splits) };
    let validation = Validation::new(alphas.clone(), splits)
        .with_geometry(geometry)
        .with_recorded_splits(record_splits)
        .py()?;
    let spacing = one_spacing(spacing)?;
    let threshold = mask_threshold.unwrap_or(0.0);
    let m = arrays::masks_coded(masks, "masks", &coding)?;
    let pool = match (scores.filter(|s| !s.is_none()), inner_scores, outer_scores) {
        (Some(s), None, None) => {
            let c =
                Cal::new(parse_transform(inner, mask_threshold)?, parse_transform(outer, mask_threshold)?)
                    .with_spacing(spacing)
                    .with_tolerances(tolerances);
            let (s, _) = arrays::scores(s, "scores")?;
            with_scores!(&s, sv => with_masks!(&m, mv => crate::interrupt::detach(py, || pool_raw(&c, sv, mv, threshold))))
        }
        (None, Some(a), Some(b)) => {
            if inner != "identity" || outer != "identity" {
                return Err(value_error("inner/outer transforms do not apply to already transformed scores"));
            }
            let c = Calibrator::new(Identity, Identity).with_spacing(spacing).with_tolerances(tolerances);
            let a = arrays::asarray(a)?;
            let b = arrays::asarray(b)?;
            let t = match (arrays::score_type(&a, "inner scores")?, arrays::score_type(&b, "outer scores")?) {
                (arrays::ScoreType::F32, arrays::ScoreType::F32) => arrays::ScoreType::F32,
                _ => arrays::ScoreType::F64,
            };
            match (arrays::cast_scores(&a, t)?, arrays::cast_scores(&b, t)?) {
                (Scores::F32(x), Scores::F32(y)) => {
                    let (x, y) = (x.as_array(), y.as_array());
                    with_masks!(&m, mv => crate::interrupt::detach(py, || pool_transformed(x, y, mv, &c, threshold)))
                }
                (Scores::F64(x), Scores::F64(y)) => {
                    let (x, y) = (x.as_array(), y.as_array());
                    with_masks!(&m, mv => crate::interrupt::detach(py, || pool_transformed(x, y, mv, &c, threshold)))
                }
                _ => unreachable!("both sides are cast to one float type"),
            }
        }
        _ => return Err(value_error(
            "give scores (with inner/outer transforms), or scores=None with inner_scores and outer_scores",
        )),
    }
    .py()?;
    let reports = crate::interrupt::detach_reporting(py, progress, Arc::default(), |counter| {
        validation.run_with_progress(&pool, &methods, |p| counter.set(p.done, p.total))
    })
    .py()?;
    let text = match spec {
        None => serde_json::to_string(&reports),
        Some(spec) => {
            let d = crate::interrupt::detach(py, || {
                alphas
                    .iter()
                    .map(|&a| confseg::evaluate::diagnostics::diagnose(&pool, &levels, a, splits, &spec))
                    .collect::<confseg::Result<Vec<_>>>()
            })
            .py()?;
            serde_json::to_string(&serde_json::json!({ "reports": &reports, "by_stratum": d }))
        }
    }
    .map_err(|e| value_error(e.to_string()))?;
    json_loads(py, &text)
}
