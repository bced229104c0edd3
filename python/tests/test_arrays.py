"""Arrays in and out: no copies where the dtype and layout allow, any
strides, anything numpy.asarray accepts, one image / a stack / a list."""

import threading

import numpy as np
import pytest

import confseg


@pytest.fixture(scope="module")
def data():
    s, m = confseg.synthetic((24, 28), 60, seed=3)
    return s.astype(np.float32), m


def test_identity_returns_the_input_without_a_copy(data):
    s, _ = data
    x = np.ascontiguousarray(s[0])
    y = confseg.transform(x, "identity")
    assert y is x and np.shares_memory(x, y)
    # f64, a stack, a Fortran-ordered and a strided view: still the same memory
    x64 = s.astype(np.float64)
    assert confseg.transform(x64, "identity") is x64
    f = np.asfortranarray(s[1])
    assert confseg.transform(f, "identity") is f
    v = s[:, ::2, 1:]
    out = confseg.transform(v, "identity", ndim=2)
    assert np.shares_memory(out, s) and np.array_equal(out, v)
    # a transform that computes returns new memory in the input's float type
    d = confseg.transform(x, "sigmoid")
    assert d.dtype == np.float32 and not np.shares_memory(d, x)


def test_non_contiguous_input_gives_the_same_results(data):
    s, m = data
    cal = confseg.Calibrator(inner="identity", outer="distance")
    want = cal.statistics(s, m)
    # negative strides, a strided view and Fortran order
    flipped = cal.statistics(s[:, ::-1, ::-1], m[:, ::-1, ::-1])
    assert np.array_equal(flipped.tau, cal.statistics(np.ascontiguousarray(s[:, ::-1, ::-1]), m[:, ::-1, ::-1]).tau)
    wide = np.zeros((60, 24, 56), np.float32)
    wide[:, :, ::2] = s
    assert cal.statistics(wide[:, :, ::2], m) == want
    assert cal.statistics(np.asfortranarray(s), np.asfortranarray(m)) == want
    sets = cal.fit(want, alpha=0.2)
    a = sets.predict(wide[:, :, ::2])
    b = sets.predict(s)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_array_likes_and_dtypes(data, tmp_path):
    s, m = data
    cal = confseg.Calibrator()
    want = cal.statistics(s, m)
    # a read-only memory map, masks as uint8 / int64 / float 0-1
    np.save(tmp_path / "s.npy", s)
    mm = np.load(tmp_path / "s.npy", mmap_mode="r")
    assert cal.statistics(mm, m.astype(np.uint8)) == want
    assert cal.statistics(s, m.astype(np.int64)) == want
    assert cal.statistics(s, m.astype(np.float32)) == want
    # big-endian scores are converted
    assert cal.statistics(s.astype(">f4"), m) == want
    # integer scores: exact float32 (int16) or float64 (int64)
    k = np.round(s * 10).astype(np.int16)
    assert cal.statistics(k, m) == cal.statistics(k.astype(np.float32), m)
    assert cal.statistics(k.astype(np.int64), m) == cal.statistics(k.astype(np.float64), m)
    # nested lists work as numpy.asarray does
    assert cal.statistics(s[:2].tolist(), m[:2].tolist()).tau.tolist() == want.tau[:2].tolist()
    with pytest.raises(TypeError, match="complex"):
        cal.statistics(s.astype(np.complex64), m)
    with pytest.raises(ValueError, match="masks must be 0/1"):
        cal.statistics(s, m * 0.5)


def test_torch_tensors_when_installed(data):
    torch = pytest.importorskip("torch")
    s, m = data
    cal = confseg.Calibrator()
    assert cal.statistics(torch.from_numpy(s), torch.from_numpy(m)) == cal.statistics(s, m)


def test_one_image_a_stack_and_a_list(data):
    s, m = data
    cal = confseg.Calibrator(outer="distance")
    stack = cal.statistics(s, m)
    one = confseg.Calibration.concat(cal.statistics(s[i], m[i]) for i in range(len(s)))
    assert one == stack
    # a list of images of different shapes
    images = [s[0], s[1, :20, :17], s[2, 3:]]
    masks = [m[0], m[1, :20, :17], m[2, 3:]]
    lst = cal.statistics(images, masks)
    assert len(lst) == 3
    assert lst.tau[1] == cal.statistics(images[1], masks[1]).tau[0]
    sets = cal.fit(stack, alpha=0.2)
    inner, outer = sets.predict(images)
    assert [a.shape for a in inner] == [x.shape for x in images]
    i1, o1 = sets.predict(images[1])
    assert np.array_equal(inner[1], i1) and np.array_equal(outer[1], o1)


def test_volumes_with_their_own_spacing():
    s, m = confseg.synthetic((10, 12, 8), 12, seed=4)
    cal = confseg.Calibrator(outer="distance", spacing=(1.0, 1.0, 2.5))
    assert len(cal.statistics(s[0], m[0])) == 1  # 3-D: one volume (from the spacing)
    spacings = [(0.8, 0.8, 2.5 + 0.1 * i) for i in range(12)]
    per = cal.statistics(s, m, spacing=spacings)
    assert per.per_image_spacing and len(per) == 12
    one_by_one = confseg.Calibration.concat(cal.statistics(s[i], m[i], spacing=spacings[i]) for i in range(12))
    assert one_by_one == per
    sets = cal.fit(per, alpha=0.3)
    assert sets.per_image_spacing
    with pytest.raises(ValueError, match="give this image's spacing"):
        sets.predict(s[0])
    i0, o0 = sets.predict(s[0], spacing=spacings[0])
    inner, outer = sets.predict(s, spacing=spacings)
    assert np.array_equal(inner[0], i0) and np.array_equal(outer[0], o0)


def test_threads_run_in_parallel_without_the_gil(data):
    s, m = data
    cal = confseg.Calibrator(outer="distance")
    want = cal.statistics(s, m)
    results = [None] * 4

    def work(i):
        results[i] = cal.statistics(s, m)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == want for r in results)
