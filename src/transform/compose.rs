//! Transforms a prototyper builds: chains of transforms and transforms of
//! one's own, registered under a name (METHOD.md §5).
//!
//! * [`Then`] (from [`Transform::then`]) applies one transform to the output
//!   of another: smoothing, then the distance to the smoothed prediction.
//!   Among the named transforms the same is spelled `gaussian:2|distance`
//!   ([`TransformChain`]), on the CLI, in calibration files and in Python.
//! * [`register`] gives any [`Transform`] a name. [`ScoreTransform`] then
//!   parses that name, fitted sets using it are saved with it, and loading
//!   them in a program that registered the same name gives the same sets
//!   back. A name that is not registered stays an error naming it.
//!
//! A chain is still one fixed function chosen before calibration, so the
//! coverage guarantee holds for it as for any transform.
//!
//! ```
//! use confseg::transform::{register, Transform};
//! use confseg::{ScoreTransform, Spacing};
//! use confseg::float::Float;
//! use ndarray::{ArrayRef, CowArray, Dimension};
//!
//! /// Scores clipped to [-4, 4].
//! struct Clip;
//! impl Transform for Clip {
//!     fn apply<'a, A: Float, D: Dimension>(
//!         &self,
//!         s: &'a ArrayRef<A, D>,
//!         _: &Spacing,
//!     ) -> confseg::Result<CowArray<'a, A, D>> {
//!         let c = A::from_f64_lossy(4.0);
//!         Ok(s.mapv(|x| x.max(-c).min(c)).into())
//!     }
//!     fn uses_spacing(&self) -> bool {
//!         false
//!     }
//! }
//!
//! register("clip4", Clip)?;
//! let t: ScoreTransform = "clip4|gaussian:2".parse()?;
//! assert_eq!(t.to_string(), "clip4|gaussian:2");
//! let s = ndarray::array![9.0_f32, -9.0, 0.0];
//! let out = t.apply(&s, &Spacing::unit())?;
//! assert!(out.iter().all(|x| x.abs() <= 4.0));
//! // an unknown name is an error that names it
//! let e = "clip5".parse::<ScoreTransform>().unwrap_err();
//! assert!(e.to_string().contains("clip5"));
//! # Ok::<(), confseg::Error>(())
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use ndarray::{ArrayD, ArrayRef, ArrayViewD, CowArray, Dimension};

use super::{ScoreTransform, Spacing, Transform};
use crate::error::{Error, Result};
use crate::float::Float;

/// `second` applied to the output of `first`: build it with
/// [`Transform::then`].
///
/// ```
/// use confseg::transform::Transform;
/// use confseg::{GaussianSmoothing, Metric, SignedDistance, Spacing};
/// use confseg::transform::Width;
/// use ndarray::array;
/// let smooth = GaussianSmoothing::new(Width::Sigma(1.0))?;
/// let t = smooth.then(SignedDistance::new(Metric::Euclidean));
/// assert_eq!(t.describe(), "gaussian-sigma:1|distance:euclidean");
/// let s = array![-1.0_f64, 1.0, 1.0, -1.0, -1.0];
/// let smoothed = smooth.apply(&s, &Spacing::unit())?;
/// let direct = SignedDistance::new(Metric::Euclidean).apply(&smoothed, &Spacing::unit())?;
/// assert_eq!(t.apply(&s, &Spacing::unit())?, direct);
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Then<T, U> {
    first: T,
    second: U,
}

impl<T, U> Then<T, U> {
    /// `second ∘ first`.
    pub fn new(first: T, second: U) -> Self {
        Then { first, second }
    }

    /// The transform applied first.
    pub fn first(&self) -> &T {
        &self.first
    }

    /// The transform applied to the first one's output.
    pub fn second(&self) -> &U {
        &self.second
    }
}

impl<T: Transform, U: Transform> Transform for Then<T, U> {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        let mid = self.first.apply(scores, spacing)?;
        Ok(self.second.apply(&mid, spacing)?.into_owned().into())
    }
    fn describe(&self) -> String {
        format!("{}|{}", self.first.describe(), self.second.describe())
    }
    fn uses_spacing(&self) -> bool {
        self.first.uses_spacing() || self.second.uses_spacing()
    }
}

/// The named form of a chain: two or more [`ScoreTransform`]s, none a
/// chain itself, applied left to right and written with `|`
/// (`gaussian:2|distance`). Built by parsing, or by [`ScoreTransform::chain`].
///
/// ```
/// use confseg::transform::TransformChain;
/// use confseg::ScoreTransform;
/// let t: ScoreTransform = "gaussian:2 | distance:chessboard:threshold=0.5".parse()?;
/// assert_eq!(t.to_string(), "gaussian:2|distance:chessboard:threshold=0.5");
/// let ScoreTransform::Chain(c) = &t else { unreachable!() };
/// assert_eq!(c.steps().len(), 2);
/// assert_eq!(ScoreTransform::chain(c.steps().to_vec())?, ScoreTransform::Chain(c.clone()));
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "ChainRepr", into = "ChainRepr"))]
pub struct TransformChain {
    steps: Vec<ScoreTransform>,
}

/// The serialized form of a chain: `{"name": "chain", "steps": [...]}`.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainRepr {
    steps: Vec<ScoreTransform>,
}

#[cfg(feature = "serde")]
impl TryFrom<ChainRepr> for TransformChain {
    type Error = Error;
    fn try_from(r: ChainRepr) -> Result<Self> {
        match ScoreTransform::chain(r.steps)? {
            ScoreTransform::Chain(c) => Ok(c),
            _ => Err(Error::InvalidParameter {
                name: "transform",
                value: "chain".into(),
                reason: "a chain needs at least two steps".into(),
            }),
        }
    }
}

#[cfg(feature = "serde")]
impl From<TransformChain> for ChainRepr {
    fn from(c: TransformChain) -> Self {
        ChainRepr { steps: c.steps }
    }
}

/// The longest chain accepted (a bound on what a file can ask for).
pub const MAX_CHAIN_STEPS: usize = 16;

/// The error for a chain longer than [`MAX_CHAIN_STEPS`].
pub(crate) fn too_many_steps() -> Error {
    Error::InvalidParameter {
        name: "transform",
        value: format!("a chain of more than {MAX_CHAIN_STEPS} steps"),
        reason: format!("chains take at most {MAX_CHAIN_STEPS} steps"),
    }
}

impl ScoreTransform {
    /// `steps` applied left to right, nested chains flattened. One step is
    /// that step itself; none is the identity.
    ///
    /// ```
    /// use confseg::ScoreTransform;
    /// let t = ScoreTransform::chain(vec!["gaussian:2".parse()?, "distance".parse()?])?;
    /// assert_eq!(t.to_string(), "gaussian:2|distance:euclidean");
    /// # Ok::<(), confseg::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for more than [`MAX_CHAIN_STEPS`] steps.
    pub fn chain(steps: Vec<ScoreTransform>) -> Result<ScoreTransform> {
        let mut flat = Vec::with_capacity(steps.len().min(MAX_CHAIN_STEPS));
        for s in steps {
            match s {
                ScoreTransform::Chain(c) => flat.extend(c.steps),
                s => flat.push(s),
            }
            if flat.len() > MAX_CHAIN_STEPS {
                return Err(too_many_steps());
            }
        }
        Ok(match flat.len() {
            0 => ScoreTransform::Identity,
            1 => flat.swap_remove(0),
            _ => ScoreTransform::Chain(TransformChain { steps: flat }),
        })
    }
}

impl TransformChain {
    /// The steps, in the order they are applied.
    #[must_use]
    pub fn steps(&self) -> &[ScoreTransform] {
        &self.steps
    }

    pub(crate) fn map_steps(
        self,
        f: impl FnMut(ScoreTransform) -> Result<ScoreTransform>,
    ) -> Result<ScoreTransform> {
        ScoreTransform::chain(self.steps.into_iter().map(f).collect::<Result<_>>()?)
    }
}

impl Transform for TransformChain {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        let Some((first, rest)) = self.steps.split_first() else {
            return Ok(scores.view().into());
        };
        let mut out = first.apply(scores, spacing)?;
        for step in rest {
            out = step.apply(&out, spacing)?.into_owned().into();
        }
        Ok(out)
    }
    fn describe(&self) -> String {
        self.to_string()
    }
    fn uses_spacing(&self) -> bool {
        self.steps.iter().any(Transform::uses_spacing)
    }
}

impl fmt::Display for TransformChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            s.fmt(f)?;
        }
        Ok(())
    }
}

/// The object-safe face of a registered [`Transform`]: its generic method
/// instantiated for the two float types on n-D images.
trait DynTransform: Send + Sync {
    fn apply_f64(&self, scores: ArrayViewD<'_, f64>, spacing: &Spacing) -> Result<ArrayD<f64>>;
    fn apply_f32(&self, scores: ArrayViewD<'_, f32>, spacing: &Spacing) -> Result<ArrayD<f32>>;
    fn uses_spacing(&self) -> bool;
}

impl<T: Transform + Send + Sync> DynTransform for T {
    fn apply_f64(&self, scores: ArrayViewD<'_, f64>, spacing: &Spacing) -> Result<ArrayD<f64>> {
        Ok(self.apply(&scores, spacing)?.into_owned())
    }
    fn apply_f32(&self, scores: ArrayViewD<'_, f32>, spacing: &Spacing) -> Result<ArrayD<f32>> {
        Ok(self.apply(&scores, spacing)?.into_owned())
    }
    fn uses_spacing(&self) -> bool {
        Transform::uses_spacing(self)
    }
}

type Registry = RwLock<BTreeMap<String, Arc<dyn DynTransform>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(BTreeMap::new()))
}

/// Names the built-in transforms use (and words the formats reserve).
const RESERVED: [&str; 12] = [
    "identity",
    "sigmoid",
    "distance",
    "distance-centre",
    "distance-center",
    "gaussian",
    "gaussian-sigma",
    "box",
    "box-inner",
    "box-outer",
    "chain",
    "registered",
];

/// Register `transform` under `name` for this program, so that
/// [`ScoreTransform`] parses `name` (alone or as a step of a chain) and
/// fitted sets using it save and load. A name is 1 to 64 characters of
/// ASCII letters, digits, `-`, `_` and `.`, starting with a letter, and
/// not a built-in transform's name. Registration lasts for the process;
/// load a saved file in a program that registers the same name with the
/// same transform.
///
/// Registered transforms are applied through their `f64` and `f32`
/// instantiations on n-D arrays: results are those of the transform
/// itself, in the scores' own float type.
///
/// # Errors
/// [`Error::InvalidParameter`] for a malformed, reserved or already
/// registered name.
pub fn register<T: Transform + Send + Sync + 'static>(name: &str, transform: T) -> Result<()> {
    let bad =
        |reason: String| Error::InvalidParameter { name: "transform name", value: name.to_owned(), reason };
    let well_formed = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !well_formed {
        return Err(bad("1 to 64 ASCII letters, digits, '-', '_' or '.', starting with a letter".into()));
    }
    if RESERVED.contains(&name) {
        return Err(bad("is a built-in transform's name".into()));
    }
    let mut map = registry().write().unwrap_or_else(PoisonError::into_inner);
    if map.contains_key(name) {
        return Err(bad("is already registered".into()));
    }
    map.insert(name.to_owned(), Arc::new(transform));
    Ok(())
}

/// The names registered with [`register`], sorted.
#[must_use]
pub fn registered_names() -> Vec<String> {
    registry().read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
}

/// A transform registered with [`register`], as a [`ScoreTransform`] holds
/// it: compared, printed and saved by its name.
#[derive(Clone)]
pub struct RegisteredTransform {
    name: String,
    transform: Arc<dyn DynTransform>,
}

impl RegisteredTransform {
    /// The transform registered as `name`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if no transform has that name.
    pub fn lookup(name: &str) -> Result<Self> {
        let map = registry().read().unwrap_or_else(PoisonError::into_inner);
        match map.get(name) {
            Some(t) => Ok(RegisteredTransform { name: name.to_owned(), transform: Arc::clone(t) }),
            None => Err(Error::InvalidParameter {
                name: "transform",
                value: name.to_owned(),
                reason: if map.is_empty() {
                    "is not registered in this program (confseg::transform::register)".to_owned()
                } else {
                    format!(
                        "is not registered in this program (registered: {})",
                        map.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                },
            }),
        }
    }

    /// The registered name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for RegisteredTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredTransform").field("name", &self.name).finish_non_exhaustive()
    }
}

impl PartialEq for RegisteredTransform {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl fmt::Display for RegisteredTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A registered transform's method for float type `A`.
type DynApply<A> = for<'x> fn(&dyn DynTransform, ArrayViewD<'x, A>, &Spacing) -> Result<ArrayD<A>>;

/// The method of `t` for `A` when `A` is `f64` or `f32`. (Function
/// pointers are `'static`, so [`Any`] finds the instantiation without
/// unsafe code or copies.)
fn dyn_apply<A: Float>() -> Option<DynApply<A>> {
    let f64s: DynApply<f64> = |t, s, sp| t.apply_f64(s, sp);
    let f32s: DynApply<f32> = |t, s, sp| t.apply_f32(s, sp);
    let (f64s, f32s): (&dyn Any, &dyn Any) = (&f64s, &f32s);
    f64s.downcast_ref::<DynApply<A>>().or_else(|| f32s.downcast_ref::<DynApply<A>>()).copied()
}

impl Transform for RegisteredTransform {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> Result<CowArray<'a, A, D>> {
        let out: ArrayD<A> = match dyn_apply::<A>() {
            Some(f) => f(&*self.transform, scores.view().into_dyn(), spacing)?,
            // another float type: through f64
            None => {
                let wide = scores.mapv(A::to_f64_lossless).into_dyn();
                self.transform.apply_f64(wide.view(), spacing)?.mapv(A::from_f64_lossy)
            }
        };
        let shape = out.shape().to_vec();
        out.into_dimensionality::<D>()
            .ok()
            .filter(|o| o.shape() == scores.shape())
            .map(CowArray::from)
            .ok_or_else(|| Error::InvalidParameter {
                name: "transform",
                value: self.name.clone(),
                reason: format!("returned shape {shape:?} for scores of shape {:?}", scores.shape()),
            })
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
    fn uses_spacing(&self) -> bool {
        self.transform.uses_spacing()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for RegisteredTransform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("RegisteredTransform", 1)?;
        st.serialize_field("id", &self.name)?;
        st.end()
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for RegisteredTransform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Repr {
            id: String,
        }
        let r = Repr::deserialize(d)?;
        RegisteredTransform::lookup(&r.id).map_err(serde::de::Error::custom)
    }
}
