"""Seeded property tests over dtypes, shapes, strides and parameters
(issue 21): whatever the input, confseg returns the NumPy reference or
raises a one-line ValueError / TypeError / OSError / MemoryError; it never
crashes. Each family runs in a child process, so that an abort fails the
test (naming the case) instead of killing the test run.
"""

import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import confseg

ALLOWED = (ValueError, TypeError, OSError, MemoryError)
NUMERIC = [
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", ">f8", ">f4", ">i4", ">u2", ">i8",
]


def check_error(e, case):
    assert isinstance(e, ALLOWED), f"{case}: {type(e).__name__}: {e}"
    assert str(e), f"{case}: no message"
    check_text(str(e), case)
    assert "panicked" not in str(e).lower(), f"{case}: {e}"


def check_text(text, case):
    assert "\n" not in text, f"{case}: not one line: {text!r}"
    assert not re.search(r"\d{25}", text), f"{case}: a number of 25+ digits: {text!r}"


def attempt(case, f):
    """f() or None if it raised an allowed one-line error; warnings one line."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = f()
        for w in caught:
            check_text(str(w.message), case)
        return out
    except BaseException as e:  # PanicException derives from BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        check_error(e, case)
        return None


def layout(rng, a):
    """`a` as a view with awkward strides, or a copy in another order."""
    k = rng.integers(5)
    if k == 0 or a.ndim == 0:
        return a
    if k == 1:
        return a[::-1]  # negative stride
    if k == 2:
        big = np.repeat(a, 2, axis=-1)
        return big[..., ::2]  # non-contiguous, same values
    if k == 3:
        return np.asfortranarray(a)
    return np.ascontiguousarray(a)


def random_scores(rng, shape, dtype):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo, hi = max(info.min, -1000), min(info.max, 1000)
        x = rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
        if dt.itemsize == 8 and rng.random() < 0.3 and x.size:
            x.flat[rng.integers(x.size)] = (2**53 + 1) if rng.random() < 0.5 else 2**60
        return x
    x = rng.normal(scale=3, size=shape).astype(dt)
    if rng.random() < 0.2 and x.size:
        x.flat[rng.integers(x.size)] = rng.choice([np.inf, -np.inf, np.nan])
    return x


def reference_statistics(s, m):
    """(tau_i, gamma_i) of identity transforms, per image of a stack."""
    tau, gamma = [], []
    for si, mi in zip(s, m):
        si = si.astype(np.float64)
        mi = mi.astype(bool)
        tau.append(si[~mi].max() if (~mi).any() else -np.inf)
        gamma.append((-si[mi]).max() if mi.any() else -np.inf)
    return np.array(tau), np.array(gamma)


def exact_in_float64(x):
    if x.dtype.kind in "iu" and x.dtype.itemsize == 8:
        return all(int(float(v)) == v for v in x.ravel().tolist())
    return True


def fuzz_statistics(seed, cases):
    rng = np.random.default_rng(seed)
    for c in range(cases):
        dtype = NUMERIC[rng.integers(len(NUMERIC))]
        ndim = int(rng.integers(1, 4))
        cal = confseg.Calibrator(inner="identity", outer="identity", ndim=ndim)
        n = int(rng.integers(0, 6))
        shape = (n,) + tuple(int(d) for d in rng.integers(0 if rng.random() < 0.1 else 1, 6, size=ndim))
        s = layout(rng, random_scores(rng, shape, dtype))
        mdtype = ["bool", "uint8", "int32", "float64", ">f8", "float16"][rng.integers(6)]
        m = layout(rng, (rng.random(shape) < 0.4).astype(mdtype))
        case = f"statistics case {c}: scores {s.dtype} {s.shape} strides {s.strides}, masks {m.dtype}"
        print(case, flush=True)
        stats = attempt(case, lambda: cal.statistics(s, m))
        if n == 0:
            assert stats is None or len(stats) == 0, case
            continue
        nan = s.dtype.kind == "f" and np.isnan(s).any()
        valid = n > 0 and s.size > 0 and not nan and exact_in_float64(s)
        if stats is None:
            assert not valid, f"{case}: refused a valid input"
            continue
        assert valid, f"{case}: accepted an invalid input"
        tau, gamma = reference_statistics(s, m)
        assert np.array_equal(stats.tau, tau) and np.array_equal(stats.gamma, gamma), case
        # thresholds: the conformal rank ceil((1 - alpha)(n + 1)) of the sorted statistics
        for alpha in (0.05, 0.2, 0.5, float(rng.uniform(0.01, 0.99))):
            k = (1 - alpha) * (n + 1)
            if abs(k - round(k)) < 1e-9:
                continue
            k = math.ceil(k)
            sets = cal.fit(stats, alpha=alpha)
            for side, stat in (("inner", tau), ("outer", gamma)):
                want = np.sort(stat)[k - 1] if k <= n else np.inf
                got = sets.thresholds[side]["value"]
                assert got == want or (math.isinf(got) and math.isinf(want)), (case, alpha, side, got, want)
            if s.dtype.kind == "f" and s.dtype.itemsize < 4:
                continue
            image = s[0]
            inner, outer = attempt(case, lambda: sets.predict(image)) or (None, None)
            if inner is not None:
                x = image.astype(np.float64)
                assert np.array_equal(inner, x > sets.thresholds["inner"]["value"]), case
                assert np.array_equal(outer, -x <= sets.thresholds["outer"]["value"]), case


def fuzz_arrays(seed, cases):
    """Odd arrays and parameters: errors only, one line, never a crash."""
    rng = np.random.default_rng(seed)
    odd_dtypes = ["complex64", "object", "U3", "datetime64[s]", "V8"] + NUMERIC
    cal = confseg.Calibrator(inner="identity", outer="distance")
    for c in range(cases):
        dtype = odd_dtypes[rng.integers(len(odd_dtypes))]
        shape = tuple(int(d) for d in rng.integers(0, 5, size=int(rng.integers(0, 5))))
        try:
            s = np.zeros(shape, dtype=dtype) if np.dtype(dtype).kind in "cOUMV" else random_scores(rng, shape, dtype)
        except (TypeError, ValueError):
            continue
        if rng.random() < 0.2 and s.ndim and s.shape[-1]:
            s = np.broadcast_to(s[..., :1], s.shape[:-1] + (int(rng.integers(1, 50)),))  # zero stride
        m = np.ones(s.shape, bool) if rng.random() < 0.8 else np.full(s.shape, 2, np.int8)
        alpha = [0.0, 1.0, -0.1, 1e-300, 1 - 1e-16, np.nan, np.inf, 0.1, 1e300][rng.integers(9)]
        transform = ["identity", "sigmoid", "gaussian:1", "distance", "box-outer", "morphological"][rng.integers(6)]
        case = f"arrays case {c}: {s.dtype} {s.shape} strides {s.strides}, alpha {alpha}, {transform}"
        print(case, flush=True)
        attempt(case, lambda: confseg.transform(s, transform))
        stats = attempt(case, lambda: cal.statistics(s, m))
        if stats is not None:
            attempt(case, lambda: cal.fit(stats, alpha=alpha))
            attempt(case, lambda: cal.fit(stats, alpha=0.1, delta=alpha))
        attempt(case, lambda: confseg.validate(s, m, n_cal=2, repeats=3, alphas=[alpha]))


def fuzz_transforms(seed, cases):
    """Transforms of float arrays equal NumPy where NumPy is the definition."""
    rng = np.random.default_rng(seed)
    for c in range(cases):
        dtype = ["float32", "float64", ">f8", "float16", "int16"][rng.integers(5)]
        shape = tuple(int(d) for d in rng.integers(1, 7, size=int(rng.integers(1, 4))))
        x = layout(rng, (rng.normal(scale=4, size=shape)).astype(dtype))
        case = f"transform case {c}: {x.dtype} {x.shape} strides {x.strides}"
        print(case, flush=True)
        same = attempt(case, lambda: confseg.transform(x, "identity"))
        assert same is not None and np.array_equal(np.asarray(same, np.float64), x.astype(np.float64)), case
        p = attempt(case, lambda: confseg.transform(x, "sigmoid"))
        want = 1 / (1 + np.exp(-x.astype(np.float64)))
        tol = 1e-6 if np.asarray(p).dtype == np.float32 else 1e-12
        assert p is not None and np.allclose(p, want, rtol=tol, atol=tol), case


FAMILIES = {"statistics": (fuzz_statistics, 500), "arrays": (fuzz_arrays, 500), "transforms": (fuzz_transforms, 300)}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fuzz(family, seed):
    """The family's cases in a child process: exit 0, or the failing case."""
    code = f"import test_fuzz as t; f, n = t.FAMILIES[{family!r}]; f({seed}, n)"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    last = r.stdout.strip().splitlines()[-1:] or ["(no case started)"]
    assert r.returncode == 0, f"exit {r.returncode} at {last[0]}:\n{r.stderr[-3000:]}"
