"""Shared fixtures: the repository, the CLI binary, the real polyp data."""

import os
import pathlib
import subprocess

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def cli_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CONFSEG_CLI", REPO / "target" / "release" / "confseg"))


@pytest.fixture(scope="session")
def cli():
    """The `confseg` binary (built by scripts/test.sh); skipped when absent
    unless CONFSEG_REQUIRE_CLI=1 (as scripts/test.sh sets)."""
    path = cli_path()
    if not path.exists():
        if os.environ.get("CONFSEG_REQUIRE_CLI") == "1":
            pytest.fail(f"{path} is missing: cargo build --release --features cli")
        pytest.skip(f"{path} is missing: cargo build --release --features cli")

    def run(*args):
        r = subprocess.run([str(path), *map(str, args)], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"confseg {' '.join(map(str, args))} failed:\n{r.stderr}")
        return r

    return run


@pytest.fixture(scope="session")
def polyps():
    """`<repo>/../shared/data/polyps` when present, else None (synthetic data then)."""
    path = REPO.parent / "shared" / "data" / "polyps"
    return path if (path / "masks.npy").exists() else None


def write_nifti(path, data, spacing, affine=None):
    """A minimal NIfTI-1 file (float32 or uint8), sform = affine or diag(spacing)."""
    import struct

    data = np.asarray(data)
    code, bitpix = {np.dtype("float32"): (16, 32), np.dtype("uint8"): (2, 8)}[data.dtype]
    if affine is None:
        affine = np.diag(list(spacing) + [1.0])
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    dims = [data.ndim] + list(data.shape) + [1] * (7 - data.ndim)
    struct.pack_into("<8h", hdr, 40, *dims)
    struct.pack_into("<hh", hdr, 70, code, bitpix)
    pix = [1.0] + list(spacing) + [1.0] * (7 - len(spacing))
    struct.pack_into("<8f", hdr, 76, *pix)
    struct.pack_into("<f", hdr, 108, 352.0)
    struct.pack_into("<B", hdr, 123, 2)  # millimetres
    struct.pack_into("<hh", hdr, 252, 0, 1)
    for r in range(3):
        struct.pack_into("<4f", hdr, 280 + 16 * r, *affine[r])
    hdr[344:348] = b"n+1\0"
    with open(path, "wb") as f:
        f.write(bytes(hdr) + b"\0\0\0\0" + np.asfortranarray(data).tobytes(order="F"))
