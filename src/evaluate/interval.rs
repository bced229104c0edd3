//! Exact binomial confidence intervals for a coverage measured on a test
//! set (`predict` with true masks).

use crate::error::{Error, Result};
use crate::risk::bounds::binomial_cdf;

/// The exact (Clopper–Pearson) interval for a proportion: `k` successes
/// out of `n`, at two-sided confidence `confidence` (e.g. 0.95). The
/// interval holds the true proportion with probability at least
/// `confidence`; it is conservative, never anti-conservative.
///
/// The lower end solves `P(Binomial(n, p) >= k) = (1 - confidence) / 2`
/// (0 for `k = 0`), the upper end `P(Binomial(n, p) <= k) = (1 - confidence) / 2`
/// (1 for `k = n`), by bisection to `1e-12`.
///
/// ```
/// use confseg::evaluate::clopper_pearson;
/// let (lo, hi) = clopper_pearson(9, 10, 0.95)?;
/// assert!((lo - 0.555_0).abs() < 1e-4 && (hi - 0.997_5).abs() < 1e-4);
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] for `n = 0`, `k > n` or a confidence
/// outside `(0, 1)`.
pub fn clopper_pearson(k: usize, n: usize, confidence: f64) -> Result<(f64, f64)> {
    if n == 0 || k > n || !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::InvalidParameter {
            name: "binomial interval",
            value: format!("{k} of {n} at {confidence}"),
            reason: "needs 0 <= k <= n, n >= 1 and a confidence strictly between 0 and 1".into(),
        });
    }
    let tail = (1.0 - confidence) / 2.0;
    // f(p) increases in p from below `tail` to above it: the root by bisection
    let root = |f: &dyn Fn(f64) -> f64| {
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        while hi - lo > 1e-12 {
            let mid = 0.5 * (lo + hi);
            if f(mid) < tail {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    };
    // P(X >= k) = 1 - P(X <= k - 1), increasing in p
    let lower = if k == 0 { 0.0 } else { root(&|p| 1.0 - binomial_cdf(n, p)[k - 1]) };
    // P(X > k) = 1 - P(X <= k), increasing in p; the upper end has P(X <= k) = tail
    let upper = if k == n { 1.0 } else { root(&|p| 1.0 - binomial_cdf(n, p)[k] - (1.0 - 2.0 * tail)) };
    Ok((lower, upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SciPy: `scipy.stats.binomtest(k, n).proportion_ci(0.95, "exact")`.
    #[test]
    fn intervals_equal_scipy() {
        for (k, n, lo, hi) in [
            (9, 10, 0.554_983_882_971_804_7, 0.997_471_421_455_537_5),
            (0, 10, 0.0, 0.308_497_107_818_762_94),
            (10, 10, 0.691_502_892_181_237_1, 1.0),
            (90, 100, 0.823_777_402_259_824_7, 0.950_995_310_778_514_1),
            (451, 500, 0.872_511_457_314_109_4, 0.926_617_414_392_259_8),
        ] {
            let (l, h) = clopper_pearson(k, n, 0.95).unwrap();
            assert!((l - lo).abs() < 1e-9 && (h - hi).abs() < 1e-9, "{k}/{n}: ({l}, {h}) vs ({lo}, {hi})");
        }
        assert!(clopper_pearson(3, 2, 0.95).is_err());
        assert!(clopper_pearson(0, 0, 0.95).is_err());
        assert!(clopper_pearson(1, 2, 1.0).is_err());
    }
}
