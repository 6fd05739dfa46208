"""argmax_decode: quarter offset, ties, DARK, C++/CUDA kernels against the reference, bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from _ops_common import DEVICES, needs_kernel
from hgfast.ops import argmax_decode, dark_refine, gaussian_heatmaps, numpy_ref
from hgfast.ops.reference import argmax_peaks_ref

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def test_matches_numpy_vectorised_and_loop():
    hm = torch.randn(4, 5, 13, 17)
    hm[0, 0] = 1.0  # constant map: first pixel, no offset
    hm[1, 1, 3, 4:7] = torch.tensor([5.0, 9.0, 5.0])  # tie between neighbours: no x offset
    coords, scores = argmax_decode(hm)
    for oracle in (numpy_ref.argmax_decode_vectorised, numpy_ref.argmax_decode_loop):
        c, s = oracle(hm.numpy())
        np.testing.assert_array_equal(coords.numpy(), c)
        np.testing.assert_array_equal(scores.numpy(), s)
    assert coords[0, 0].tolist() == [0.0, 0.0] and coords[1, 1, 0] == 5.0


def test_first_maximum_and_borders():
    hm = torch.zeros(1, 3, 4, 5)
    hm[0, 0, 2, 1] = hm[0, 0, 1, 3] = 2.0  # tie between peaks: the first in row-major order wins
    hm[0, 1, 0, 4], hm[0, 1, 1, 4], hm[0, 1, 0, 3] = 3.0, 1.0, 2.0  # corner peak: no offset at borders
    hm[0, 2, 2, 2], hm[0, 2, 2, 3], hm[0, 2, 1, 2] = 3.0, 1.0, 0.5  # interior: towards the larger neighbour
    coords, scores = argmax_decode(hm)
    assert coords[0].tolist() == [[3.0, 1.0], [4.0, 0.0], [2.25, 1.75]]
    assert scores[0].tolist() == [2.0, 3.0, 3.0]
    assert argmax_decode(hm, refine="none")[0][0, 2].tolist() == [2.0, 2.0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(3, 16, 64, 64), (2, 1, 7, 5), (1, 3, 1, 9), (2, 2, 6, 1), (1, 1, 1, 1)])
@pytest.mark.parametrize("quarter", [True, False])
def test_kernel_matches_reference(device, shape, quarter):
    needs_kernel("argmax_decode", device)
    for dtype in DTYPES:
        hm = torch.randn(shape, device=device).to(dtype)
        hm[:, :1] = hm[:, :1].round()  # many ties
        if shape[0] > 1:
            hm[1] = -2.0  # constant maps
        got = torch.ops.hgfast.argmax_decode(hm, quarter)
        want = argmax_peaks_ref(hm, quarter)
        for g, w in zip(got, want):
            assert g.dtype == torch.float32
            torch.testing.assert_close(g, w, atol=0, rtol=0)


_EVERY_LENGTH = """
import torch
from hgfast import _ext
from hgfast.ops.reference import argmax_peaks_ref
_ext.resolve()  # registers torch.ops.hgfast
torch.manual_seed(0)
for n in range(1, 301):  # every vector tail and block count of the 16/32/64-lane loops
    maps = [torch.randn(n), -torch.rand(n) - 1, torch.full((n,), -3.0), torch.randn(n).round()]
    for p in sorted({*range(0, n, max(1, n // 37)), n - 1}):
        peak = torch.full((n,), -2.0)
        peak[p] = -0.5  # a negative peak: padding lanes must not beat it
        tie = peak.clone()
        tie[n - 1] = -0.5  # ties: the first wins
        nan = torch.randn(n)
        nan[p] = float("nan")
        maps += [peak, tie, nan]
    hm = torch.stack(maps)[None, :, None, :]  # (1, K, 1, n)
    got = torch.ops.hgfast.argmax_decode(hm, False)
    for g, w in zip(got, argmax_peaks_ref(hm, False)):
        torch.testing.assert_close(g, w, atol=0, rtol=0, equal_nan=True, msg=lambda m: f"n={n}: {m}")
print("ok")
"""


@pytest.mark.parametrize("variant", ["", "avx2", "generic", "scalar"])
def test_cpu_first_peak_every_variant_and_length(variant):
    """The C++ CPU search, each SIMD variant (HGFAST_FIRST_PEAK; "": the best this CPU has), on maps of every
    length up to 300 with a negative maximum, ties and NaN placed across the vector tails."""
    needs_kernel("argmax_decode", "cpu")
    env = dict(os.environ, HGFAST_FIRST_PEAK=variant, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _EVERY_LENGTH], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


@pytest.mark.parametrize("device", DEVICES)
def test_float64_neighbours_are_compared_in_float64(device):
    """The quarter step compares a float64 map's neighbours in float64: 0.5 against 0.5 + 1e-12 (equal in float32)
    moves the peak by a quarter, in x and in y, on the kernel and on the reference."""
    needs_kernel("argmax_decode", device)
    hm = torch.zeros(1, 2, 3, 3, dtype=torch.float64, device=device)
    hm[0, :, 1, 1] = 1.0
    hm[0, 0, 1, 0], hm[0, 0, 1, 2] = 0.5, 0.5 + 1e-12
    hm[0, 1, 0, 1], hm[0, 1, 2, 1] = 0.5 + 1e-12, 0.5
    want = torch.tensor([[[1.25, 1.0], [1.0, 0.75]]], device=device)
    for coords, _ in (torch.ops.hgfast.argmax_decode(hm, True), argmax_peaks_ref(hm, True)):
        assert torch.equal(coords, want)


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_nan_is_the_maximum(device):
    needs_kernel("argmax_decode", device)
    hm = torch.rand(2, 2, 5, 40, device=device)
    hm[0, 0, 3, 7] = hm[0, 0, 4, 1] = float("nan")
    hm[1, 1, 0, 0] = float("nan")
    coords, scores = torch.ops.hgfast.argmax_decode(hm, False)
    for g, w in zip((coords, scores), argmax_peaks_ref(hm, False)):
        torch.testing.assert_close(g, w, equal_nan=True)
    assert coords[0, 0].tolist() == [7.0, 3.0] and coords[1, 1].tolist() == [0.0, 0.0]
    assert scores.isnan().sum() == 2


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_nan_and_ties_across_thread_slices(device):
    """64x64 maps: the CUDA block's 256 threads see 16 pixels each (index e, e+256, ...), so a thread meets two
    NaNs, a NaN after a larger number, and ties with other threads' pixels; the first maximum still wins."""
    needs_kernel("argmax_decode", device)
    nan = float("nan")
    hm = torch.rand(1, 6, 64, 64, device=device)
    flat = hm.view(6, -1)
    flat[0, [300 + 256 * 3, 300]] = nan  # two NaNs in one thread's slice: the first
    flat[1, 10], flat[1, 10 + 256 * 2] = 5.0, nan  # a NaN after a larger number in the same slice
    flat[2, [777 + 256, 777, 33]] = 9.0  # ties within a slice and across slices
    flat[3, [1001, 1000]] = 9.0  # ties in neighbouring threads
    flat[4, [4095, 0]] = nan  # the last and the first pixel
    flat[5] = -1.0  # constant: the first pixel
    coords, scores = torch.ops.hgfast.argmax_decode(hm, False)
    for g, w in zip((coords, scores), argmax_peaks_ref(hm, False)):
        torch.testing.assert_close(g, w, atol=0, rtol=0, equal_nan=True)
    first = [300, 522, 33, 1000, 0, 0]
    assert coords[0].tolist() == [[float(i % 64), float(i // 64)] for i in first]


def test_dark_recovers_subpixel_centre():
    kp = torch.tensor([[[20.3, 31.7], [40.6, 12.2]]])
    hm = gaussian_heatmaps(kp, size=64, sigma=2.0)
    coords, _ = argmax_decode(hm, refine="dark", dark_kernel=11)
    quarter, _ = argmax_decode(hm)
    assert (coords - kp).abs().max() < 0.1 < (quarter - kp).abs().max()
    border = gaussian_heatmaps(torch.tensor([[[1.0, 30.0]]]), size=64, sigma=2.0)
    assert argmax_decode(border, refine="dark")[0].tolist() == [[[1.0, 30.0]]]  # x < 2: left unchanged
    with pytest.raises(ValueError, match="dark_kernel"):
        argmax_decode(hm, refine="dark", dark_kernel=4)


def _dark_oracle(heatmaps: np.ndarray, peaks: np.ndarray, kernel: int) -> np.ndarray:
    """DARK as DarkPose / mmpose describe it, per map in a loop: zero-pad by the kernel's radius, cv2.GaussianBlur
    (σ from the size), rescale to the map's maximum, log, one Newton step from the integer peak (solve with the
    2x2 Hessian of ±1 gradients, ±2 second and ±1 cross differences) where 1 < x < W-2, 1 < y < H-2."""
    import cv2

    out = peaks.astype(np.float64).copy()
    r = kernel // 2
    for (b, k), (x, y) in zip(np.ndindex(*peaks.shape[:2]), peaks.reshape(-1, 2).astype(int)):
        h = heatmaps[b, k]
        blurred = cv2.GaussianBlur(np.pad(h, r), (kernel, kernel), 0)[r:-r, r:-r]
        L = np.log(np.maximum(blurred * (h.max() / blurred.max()), 1e-10))
        if not (1 < x < h.shape[1] - 2 and 1 < y < h.shape[0] - 2):
            continue
        grad = 0.5 * np.array([L[y, x + 1] - L[y, x - 1], L[y + 1, x] - L[y - 1, x]])
        dxx = 0.25 * (L[y, x + 2] - 2 * L[y, x] + L[y, x - 2])
        dyy = 0.25 * (L[y + 2, x] - 2 * L[y, x] + L[y - 2, x])
        dxy = 0.25 * (L[y + 1, x + 1] - L[y - 1, x + 1] - L[y + 1, x - 1] + L[y - 1, x - 1])
        hessian = np.array([[dxx, dxy], [dxy, dyy]])
        if np.linalg.det(hessian) != 0:
            out[b, k] -= np.linalg.solve(hessian, grad)
    return out


def test_dark_matches_an_independent_loop_on_rotated_anisotropic_peaks():
    """Elongated, rotated Gaussians (a cross term in the Hessian) with sub-pixel centres, and a border peak."""
    H, W = 48, 64
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    maps = []
    for (cx, cy), (sx, sy), angle in (((20.37, 31.71), (3.0, 1.2), 0.6), ((40.6, 12.2), (1.5, 2.5), -1.1),
                                      ((30.5, 24.25), (2.0, 2.0), 0.0), ((1.3, 20.8), (2.0, 1.0), 0.3)):
        c, s_ = np.cos(angle), np.sin(angle)
        u, v = c * (xs - cx) + s_ * (ys - cy), -s_ * (xs - cx) + c * (ys - cy)
        maps.append(np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2)))
    hm = torch.tensor(np.stack(maps)[None], dtype=torch.float32)
    peaks = argmax_decode(hm, refine="none")[0]
    got = dark_refine(hm, peaks, 11)
    want = _dark_oracle(hm.numpy(), peaks.numpy(), 11)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-4)
    assert (got[0, 0] - peaks[0, 0]).abs().max() > 0.1 and got[0, 3].tolist() == peaks[0, 3].tolist()


def test_dark_refine_checks_its_inputs():
    hm = gaussian_heatmaps(torch.tensor([[[3.3, 4.6], [2.0, 5.0], [4.0, 4.0]]]), size=8)
    peaks = torch.tensor([[[3, 5], [2, 5], [4, 4]]])
    torch.testing.assert_close(dark_refine(hm, peaks, 3), dark_refine(hm, peaks.float(), 3))  # int peaks too
    for h, p, err, match in [
        (hm, peaks[:, :2], ValueError, "peaks must have shape \\(1, 3, 2\\)"),
        (hm[:1, :1].expand(2, 3, 8, 8), peaks, ValueError, "peaks"),
        (hm, peaks[..., :1], ValueError, "peaks"),
        (hm, peaks[0], ValueError, "peaks"),
        (hm, peaks.bool(), TypeError, "peaks"),
        (hm, peaks.tolist(), TypeError, "peaks"),
        (hm[0], peaks, ValueError, "heatmaps"),
        (hm.long(), peaks, TypeError, "heatmaps"),
        (hm[..., :0], peaks, ValueError, "heatmaps"),
    ]:
        with pytest.raises(err, match=match):
            dark_refine(h, p, 3)


def test_public_dtypes_layouts_and_empty():
    hm = torch.randn(2, 3, 9, 11)
    hm[0, 0, 0, 0] = -float("inf")  # -inf away from the peak is fine
    for dtype in (torch.float32, torch.float16, torch.bfloat16):  # 16-bit maps decode as their float32 values
        c, s = argmax_decode(hm.to(dtype))
        want = numpy_ref.argmax_decode_vectorised(hm.to(dtype).float().numpy())
        assert c.dtype == s.dtype == torch.float32
        np.testing.assert_array_equal(c.numpy(), want[0])
        np.testing.assert_array_equal(s.numpy(), want[1])
    cl = hm.to(memory_format=torch.channels_last)  # non-contiguous in the (B,K,H,W) sense
    for g, w in zip(argmax_decode(cl), argmax_decode(hm)):
        torch.testing.assert_close(g, w, atol=0, rtol=0)
    c, s = argmax_decode(torch.zeros(0, 16, 64, 64))
    assert c.shape == (0, 16, 2) and s.shape == (0, 16)


@pytest.mark.parametrize("hm,kwargs,err,match", [
    (torch.zeros(3, 4, 5), {}, ValueError, "heatmaps"),
    (torch.zeros(1, 3, 4, 5, 6), {}, ValueError, "heatmaps"),
    (torch.zeros(1, 2, 4, 5, dtype=torch.int32), {}, TypeError, "heatmaps"),
    (torch.zeros(1, 2, 0, 5), {}, ValueError, "heatmaps"),
    (torch.zeros(1, 2, 4, 5), {"refine": "udp"}, ValueError, "refine"),
    (torch.zeros(1, 2, 4, 5), {"refine": "dark", "dark_kernel": True}, ValueError, "dark_kernel"),
    (torch.zeros(1, 2, 4, 5).index_fill_(3, torch.tensor([2]), float("nan")), {}, ValueError, "NaN"),
    (torch.zeros(1, 2, 4, 5).index_fill_(2, torch.tensor([1]), float("inf")), {}, ValueError, "Inf"),
])
def test_bad_input(hm, kwargs, err, match):
    with pytest.raises(err, match=match):
        argmax_decode(hm, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    needs_kernel("argmax_decode", device)
    for dtype in DTYPES:
        torch.library.opcheck(torch.ops.hgfast.argmax_decode.default, (torch.randn(2, 3, 7, 9, device=device).to(dtype), True))


def test_kernel_rejects_bad_arguments():
    needs_kernel("argmax_decode", "cpu")
    with pytest.raises(RuntimeError, match="heatmaps must have 4 dims"):
        torch.ops.hgfast.argmax_decode(torch.zeros(2, 3, 4), True)
    with pytest.raises(RuntimeError, match="heatmaps must be contiguous"):
        torch.ops.hgfast.argmax_decode(torch.zeros(1, 2, 4, 6)[..., ::2], True)
    with pytest.raises(RuntimeError, match="floating point"):
        torch.ops.hgfast.argmax_decode(torch.zeros(1, 2, 4, 6, dtype=torch.int64), True)
