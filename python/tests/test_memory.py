"""Allocation failure is MemoryError, not an abort (issue 21, item 5):
buffers proportional to the input are allocated fallibly, and inputs
whose shape claims more than 2^33 values are refused before any copy."""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import confseg

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc")


def run_limited(body, headroom_mb):
    """Run `body` in a subprocess whose address space is limited to what it
    has mapped after setup plus `headroom_mb`."""
    code = textwrap.dedent(
        """
        import resource, sys
        import numpy as np
        import confseg
        SETUP
        vm = [l for l in open("/proc/self/status") if l.startswith("VmSize:")][0]
        limit = int(vm.split()[1]) * 1024 + HEADROOM * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            CALL
        except MemoryError as e:
            print("MemoryError:", e)
            sys.exit(0)
        print("no error")
        """
    )
    setup, call = body
    code = code.replace("SETUP", setup).replace("CALL", call).replace("HEADROOM", str(headroom_mb))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@linux_only
@pytest.mark.parametrize(
    "call",
    [
        "confseg.transform(x, 'sigmoid')",
        "confseg.transform(x, 'gaussian:2')",
        "confseg.transform(x.reshape(4, 4000, -1), 'distance')",
        "confseg.Calibrator(inner='sigmoid', outer='distance').statistics(x, x > 0)",
        "confseg.synthetic((20000, 20000), 2)",
        # the copies that guard against another thread changing the array
        "confseg.write_nifti('/tmp/never-written.nii', x)",
        "confseg.write_nifti_mask('/tmp/never-written.nii', x, '/tmp/no-such-header.nii')",
    ],
)
def test_an_allocation_beyond_the_limit_is_memory_error(call):
    # 1 GB of float64 zeros (not touched: address space, not memory)
    r = run_limited(("x = np.zeros((8000, 16000))", call), headroom_mb=700)
    assert r.returncode == 0, f"exit {r.returncode} (a signal is negative):\n{r.stderr[-2000:]}"
    assert r.stdout.startswith("MemoryError: out of memory: cannot allocate "), r.stdout + r.stderr[-2000:]
    assert len(r.stdout.strip().splitlines()) == 1, r.stdout


def test_a_zero_stride_view_of_1e10_voxels_is_refused_at_once():
    x = np.lib.stride_tricks.as_strided(np.zeros(1), shape=(10**5, 10**5), strides=(0, 0))
    m = np.lib.stride_tricks.as_strided(np.zeros(1, bool), shape=(10**5, 10**5), strides=(0, 0))
    cal = confseg.Calibrator(inner="identity", outer="identity")
    for call in [
        lambda: confseg.transform(x, "sigmoid"),
        lambda: cal.statistics(x, m),
        lambda: cal.statistics(np.zeros((2, 2)), m),
        lambda: confseg.validate(x, m, n_cal=10),
    ]:
        start = time.perf_counter()
        with pytest.raises(ValueError) as e:
            call()
        assert time.perf_counter() - start < 1.0
        msg = str(e.value)
        assert "(100000, 100000)" in msg or "[100000, 100000]" in msg, msg
        assert "2^33" in msg and "\n" not in msg, msg


def test_synthetic_refuses_impossible_shapes():
    with pytest.raises(ValueError, match="2\\^33"):
        confseg.synthetic((10**6, 10**6), 1)


@linux_only
@pytest.mark.parametrize(
    "call",
    [
        "confseg.read_npy(path)",  # the whole stack at once
        "confseg.read_npy_stack(path)[0]",  # one image of 1.5 GB
        "confseg.read_npy_mask(path)",
    ],
)
def test_reading_a_file_beyond_the_limit_is_memory_error(tmp_path, call):
    """The readers allocate fallibly too: a sparse 1.5 GB .npy file (no disk
    used) read under a 700 MB headroom is MemoryError, not an abort."""
    p = tmp_path / "big.npy"
    shape = (1, 20000, 75000) if "stack" in call else (20000, 75000)
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.uint8))
    header["shape"] = shape
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.truncate(f.tell() + int(np.prod(shape)))
    r = run_limited((f"path = {str(p)!r}", call), headroom_mb=700)
    assert r.returncode == 0, f"exit {r.returncode} (a signal is negative):\n{r.stderr[-2000:]}"
    assert r.stdout.startswith("MemoryError: out of memory: cannot allocate "), r.stdout + r.stderr[-2000:]
