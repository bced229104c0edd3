//! Upper confidence bounds and p-values for the mean of per-image losses
//! in `[0, 1]` (METHOD.md §4.5), with the arithmetic MAPIE 1.6 uses so
//! that a grid search reproduces its choice to the last bit: means are
//! sums in image order divided by `n`, variances NumPy's two-pass
//! `var(ddof=1)`, and every formula keeps MAPIE's order of operations.

/// `sum / n`, summed in order (NumPy's `mean(axis=0)` of the per-image
/// losses).
pub(crate) fn mean(losses: &[f64]) -> f64 {
    losses.iter().fold(0.0, |s, &x| s + x) / losses.len() as f64
}

/// NumPy's `var(ddof=1)`: the mean, then the sum of squared deviations in
/// order, over `n - 1` (NaN for `n < 2`).
pub(crate) fn var(losses: &[f64]) -> f64 {
    let m = mean(losses);
    let ss = losses.iter().fold(0.0, |s, &x| {
        let d = x - m;
        s + d * d
    });
    ss / (losses.len() as f64 - 1.0)
}

/// Whether an upper bound certifies level `alpha`: `ucb < alpha`, false
/// for NaN.
pub(crate) fn below(ucb: f64, alpha: f64) -> bool {
    ucb < alpha
}

/// The conformal risk control bound `n/(n+1) R + 1/(n+1)` (loss bound 1).
pub(crate) fn crc(mean: f64, n: f64) -> f64 {
    (n / (n + 1.0)) * mean + 1.0 / (n + 1.0)
}

/// Hoeffding's upper confidence bound `R + sqrt(ln(1/delta) / (2n))`.
pub(crate) fn hoeffding(mean: f64, n: f64, delta: f64) -> f64 {
    mean + ((1.0 / (2.0 * n)) * (1.0 / delta).ln()).sqrt()
}

/// The empirical Bernstein bound (Maurer and Pontil 2009)
/// `R + sqrt(2 var ln(2/delta) / n) + 7 ln(2/delta) / (3(n - 1))`, `var`
/// the unbiased sample variance; `+inf` for `n < 2`.
pub(crate) fn bernstein(mean: f64, var: f64, n: f64, delta: f64) -> f64 {
    if n < 2.0 {
        return f64::INFINITY;
    }
    let l = (2.0 / delta).ln();
    mean + ((var.max(0.0) * 2.0 * l) / n).sqrt() + (7.0 * l) / (3.0 * (n - 1.0))
}

/// `ln(e^a + e^b)` without overflow.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

/// `P(Binomial(n, p) <= k)` for every `k = 0..=n` (log-space recursion of
/// the probabilities from `k = 0`, relative error about `n` ulps).
pub(crate) fn binomial_cdf(n: usize, p: f64) -> Vec<f64> {
    let lq = (-p).ln_1p();
    let ratio = p.ln() - lq;
    let mut lp = n as f64 * lq;
    let mut lc = lp;
    let mut out = Vec::with_capacity(n + 1);
    out.push(lc.exp());
    for j in 0..n {
        lp += ((n - j) as f64 / (j + 1) as f64).ln() + ratio;
        lc = log_add_exp(lc, lp);
        out.push(lc.exp().min(1.0));
    }
    out
}

/// Hoeffding–Bentkus p-values of `H: E[loss] > alpha` for `n` losses
/// (Angelopoulos et al. 2021, as MAPIE computes them):
/// `min(exp(-n h1(min(R, alpha), alpha)), e P(Binomial(n, alpha) <= ceil(n R)))`
/// with `h1(r, a) = r ln(r/a) + (1 - r) ln((1 - r)/(1 - a))`.
pub(crate) struct HoeffdingBentkus {
    n: f64,
    alpha: f64,
    cdf: Vec<f64>,
}

impl HoeffdingBentkus {
    pub(crate) fn new(n: usize, alpha: f64) -> Self {
        HoeffdingBentkus { n: n as f64, alpha, cdf: binomial_cdf(n, alpha) }
    }

    fn h1(r: f64, a: f64) -> f64 {
        let e1 = if r != 0.0 { r * (r / a).ln() } else { 0.0 };
        e1 + (1.0 - r) * ((1.0 - r) / (1.0 - a)).ln()
    }

    /// The p-value for the mean loss `mean` (`ceil(n R)` as MAPIE
    /// computes it).
    pub(crate) fn p_value(&self, mean: f64) -> f64 {
        self.p_value_with(mean, (self.n * mean).ceil())
    }

    /// The p-value for losses summing to `sum`, with `ceil(sum)` taken as
    /// the integer `sum` is within rounding error of (a sum of fractions
    /// that is an integer exactly should not count one more).
    pub(crate) fn p_value_of_sum(&self, sum: f64) -> f64 {
        let r = sum.round();
        let k = if (sum - r).abs() <= 1e-9 * sum.abs().max(1.0) { r } else { sum.ceil() };
        self.p_value_with(sum / self.n, k)
    }

    fn p_value_with(&self, mean: f64, k: f64) -> f64 {
        let a = self.alpha;
        let r = if mean > a { a } else { mean };
        let hoeffding = (-self.n * Self::h1(r, a)).exp();
        let cdf = if k < 0.0 { 0.0 } else { self.cdf.get(k as usize).copied().unwrap_or(1.0) };
        let bentkus = std::f64::consts::E * cdf;
        if bentkus > hoeffding {
            hoeffding
        } else {
            bentkus
        }
    }
}

/// Holm's step-down procedure at family-wise level `delta`: the indices
/// rejected (ascending p-values, ties by index, each tested at `delta`
/// over the number not yet rejected; stop at the first that fails).
pub(crate) fn holm(p: &[f64], delta: f64) -> Vec<usize> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    let mut out = Vec::new();
    for (j, &i) in order.iter().enumerate() {
        if p[i] <= delta / (m - j) as f64 {
            out.push(i);
        } else {
            break;
        }
    }
    out
}

/// The Waudby-Smith–Ramdas test of `E[loss] >= r` (Bates et al. 2021,
/// RCPS, as their reference code): with `mu_i = (1/2 + sum_{j<=i} L_j)/(i+1)`,
/// `s2_i = (1/4 + sum_{j<=i} (L_j - mu_j)^2)/(i+1)`, `s2_0 = 1/4`,
/// `nu_i = min(1, sqrt(2 ln(1/delta) / (n s2_{i-1})))` and the capital
/// `K_i(r) = prod_{j<=i} (1 - nu_j (L_j - r))`, the upper bound is below
/// `r` exactly when `max_i K_i(r) > 1/delta`. Kept incrementally: after
/// losses change from image `from` on, only the later images are redone.
pub(crate) struct Wsr {
    c: f64,
    n: f64,
    r: f64,
    target: f64,
    sum: Vec<f64>,
    sq: Vec<f64>,
    log_k: Vec<f64>,
    best: Vec<f64>,
}

impl Wsr {
    /// The test at level `r` for `n` images.
    pub(crate) fn new(n: usize, delta: f64, r: f64) -> Self {
        Wsr {
            c: 2.0 * (1.0 / delta).ln(),
            n: n as f64,
            r,
            target: (1.0 / delta).ln(),
            sum: vec![0.0; n],
            sq: vec![0.0; n],
            log_k: vec![0.0; n],
            best: vec![0.0; n],
        }
    }

    /// Whether `max_i K_i(r) > 1/delta` for `losses`, which changed from
    /// index `from` on since the last call (0 the first time).
    pub(crate) fn certifies(&mut self, losses: &[f64], from: usize) -> bool {
        let n = losses.len();
        if n == 0 {
            return false;
        }
        for (i, &l) in losses.iter().enumerate().skip(from) {
            let (sum0, sq0, k0, best0) = match i {
                0 => (0.0, 0.0, 0.0, f64::NEG_INFINITY),
                _ => (self.sum[i - 1], self.sq[i - 1], self.log_k[i - 1], self.best[i - 1]),
            };
            let s2_prev = match i {
                0 => 0.25,
                _ => (0.25 + sq0) / (i as f64 + 1.0),
            };
            let nu = (self.c / (self.n * s2_prev)).sqrt().min(1.0);
            let k = k0 + (1.0 - nu * (l - self.r)).ln();
            let sum = sum0 + l;
            let mu = (0.5 + sum) / (i as f64 + 2.0);
            let d = l - mu;
            self.sum[i] = sum;
            self.sq[i] = sq0 + d * d;
            self.log_k[i] = k;
            self.best[i] = best0.max(k);
        }
        self.best[n - 1] > self.target
    }
}

/// MAPIE 1.6's WSR upper bound on a grid of candidate risk levels `rs`
/// (ascending): the same `mu`, `s2`, `nu` as [`Wsr`], but the statistic is
/// the sum over the two halves of the images (the middle one left out
/// for odd `n`) of the running maximum of `sum ln(1 - nu_j (L_j - r) + eps)`
/// restarted at each half, and the bound is the first `r` of `rs` where it
/// exceeds `-ln(delta)`, or 1.
pub(crate) fn wsr_mapie(losses: &[f64], delta: f64, rs: &[f64]) -> f64 {
    let n = losses.len();
    let nf = n as f64;
    let c = 2.0 * (1.0 / delta).ln();
    let mut nu = Vec::with_capacity(n);
    let (mut cum, mut cum_sq, mut s2_prev) = (0.0, 0.0, 0.25);
    for (i, &l) in losses.iter().enumerate() {
        nu.push((c / (nf * s2_prev)).sqrt().min(1.0));
        cum += l;
        let denom = (i + 1) as f64 + 1.0;
        let mu = (0.5 + cum) / denom;
        let d = l - mu;
        cum_sq += d * d;
        s2_prev = (0.25 + cum_sq) / denom;
    }
    let target = -delta.ln();
    let halves = [0..n / 2, n - n / 2..n];
    let statistic = |r: f64| {
        let mut total = 0.0;
        for h in halves.clone() {
            let (mut s, mut top) = (0.0, f64::NEG_INFINITY);
            for i in h {
                s += ((1.0 - nu[i] * (losses[i] - r)) + f64::EPSILON).ln();
                top = top.max(s);
            }
            total += top;
        }
        total
    };
    // the statistic grows with r: the first r that crosses, by bisection
    let k = rs.partition_point(|&r| statistic(r).partial_cmp(&target) != Some(std::cmp::Ordering::Greater));
    rs.get(k).copied().unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    //! Reference values from SciPy 1.17 and NumPy 2.4, printed by
    //!
    //! ```python
    //! import numpy as np
    //! from scipy.stats import binom
    //! print(repr(binom.cdf(7, 50, 0.1)), repr(binom.cdf(0, 500, 0.1)), repr(binom.cdf(61, 500, 0.1)))
    //! L = np.array([0.0, 0.1, 0.25, 0.05, 0.3, 0.0, 0.12, 0.07])
    //! n, d = len(L), 0.1
    //! print(repr(L.mean() + np.sqrt(np.log(1 / d) / (2 * n))))
    //! print(repr(L.mean() + np.sqrt(np.var(L, ddof=1) * 2 * np.log(2 / d) / n) + 7 * np.log(2 / d) / (3 * (n - 1))))
    //! def hb(r, n, a):
    //!     rr = min(r, a)
    //!     h1 = (rr * np.log(rr / a) if rr else 0) + (1 - rr) * np.log((1 - rr) / (1 - a))
    //!     return min(np.exp(-n * h1), np.e * binom.cdf(np.ceil(n * r), n, a))
    //! print(repr(hb(0.05, 100, 0.1)), repr(hb(0.0, 30, 0.1)), repr(hb(0.12, 200, 0.1)))
    //! # WSR written plainly (Bates et al. 2021), the capital at r for the losses L
    //! def wsr_max_log_k(L, d, r):
    //!     n = len(L); mu = (0.5 + np.cumsum(L)) / (np.arange(1, n + 1) + 1)
    //!     s2 = (0.25 + np.cumsum((L - mu) ** 2)) / (np.arange(1, n + 1) + 1)
    //!     s2 = np.concatenate([[0.25], s2[:-1]])
    //!     nu = np.minimum(1, np.sqrt(2 * np.log(1 / d) / (n * s2)))
    //!     return np.max(np.cumsum(np.log(1 - nu * (L - r))))
    //! print(repr(wsr_max_log_k(L, d, 0.3)), repr(wsr_max_log_k(np.zeros(40), d, 0.1)))
    //! ```
    //!
    //! which printed
    //! `0.8778549163987216 1.3220708194807995e-23 0.9535317931547391`,
    //! `0.49060678234628663`, `1.2053520130281092`,
    //! `0.15651020427695356 0.04239115827521614 1.0`,
    //! `1.351512409074478 3.7697974228630273`.

    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(f64::MIN_POSITIVE)
    }

    const L: [f64; 8] = [0.0, 0.1, 0.25, 0.05, 0.3, 0.0, 0.12, 0.07];

    #[test]
    fn binomial_cdf_matches_scipy() {
        assert!(close(binomial_cdf(50, 0.1)[7], 0.8778549163987216, 1e-13));
        let c = binomial_cdf(500, 0.1);
        assert!(close(c[0], 1.3220708194807995e-23, 1e-12));
        assert!(close(c[61], 0.9535317931547391, 1e-12));
        assert_eq!(c[500], 1.0);
    }

    #[test]
    fn bounds_match_numpy() {
        let n = L.len() as f64;
        assert!(close(hoeffding(mean(&L), n, 0.1), 0.49060678234628663, 1e-15));
        assert!(close(bernstein(mean(&L), var(&L), n, 0.1), 1.2053520130281092, 1e-15));
        assert_eq!(bernstein(0.0, f64::NAN, 1.0, 0.1), f64::INFINITY);
        assert_eq!(crc(0.0, 9.0), 0.1);
    }

    #[test]
    fn hoeffding_bentkus_matches_scipy() {
        assert!(close(HoeffdingBentkus::new(100, 0.1).p_value(0.05), 0.15651020427695356, 1e-12));
        assert!(close(HoeffdingBentkus::new(30, 0.1).p_value(0.0), 0.04239115827521614, 1e-12));
        assert!(close(HoeffdingBentkus::new(200, 0.1).p_value(0.12), 1.0, 1e-12));
    }

    #[test]
    fn wsr_matches_the_plain_recursion() {
        // the test at r against the capital printed above, and its increments
        let max_log_k = |l: &[f64], r: f64| {
            let mut w = Wsr::new(l.len(), 0.1, r);
            w.certifies(l, 0);
            w.best[l.len() - 1]
        };
        assert!(close(max_log_k(&L, 0.3), 1.351512409074478, 1e-14));
        assert!(close(max_log_k(&[0.0; 40], 0.1), 3.7697974228630273, 1e-14));
        // incremental updates agree with recomputing from scratch
        let mut w = Wsr::new(8, 0.05, 0.2);
        let mut l = L.to_vec();
        w.certifies(&l, 0);
        for (i, x) in [(5, 0.4), (2, 0.0), (7, 1.0)] {
            l[i] = x;
            let a = w.certifies(&l, i);
            let mut fresh = Wsr::new(8, 0.05, 0.2);
            assert_eq!(a, fresh.certifies(&l, 0));
            assert_eq!(w.best, fresh.best);
        }
    }

    #[test]
    fn holm_steps_down() {
        // m = 4 at delta = 0.1: 0.01 <= 0.025, 0.02 <= 0.0333, 0.04 <= 0.05, 0.2 > 0.1
        assert_eq!(holm(&[0.04, 0.2, 0.01, 0.02], 0.1), vec![2, 3, 0]);
        assert_eq!(holm(&[0.5, 0.01], 0.01), Vec::<usize>::new());
    }
}
