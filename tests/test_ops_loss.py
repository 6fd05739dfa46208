"""heatmap_mse_loss: equals MSE against gaussian_heatmaps, fused kernels vs reference, gradcheck, bad input."""
import subprocess
import sys
import textwrap

import pytest
import torch

from _ops_common import DEVICES, needs_kernel, random_keypoints
from hgfast import _ext
from hgfast.ops import gaussian_heatmaps, heatmap_mse_loss
from hgfast.ops.reference import heatmap_mse_loss_ref


def _inputs(B, S, K, H, W, device, dtype=torch.float64, N=1):
    pred = torch.rand(B, S, K, H, W, device=device, dtype=torch.float64).to(dtype)
    kp = random_keypoints(B, N, K, H, W, device)
    vis = torch.rand(B, N, K, device=device) > 0.25
    w = torch.rand(B, K, device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    sigma = torch.rand(K, device=device) * 3.5 + 0.5
    return pred, kp, vis, w, sigma


@pytest.mark.parametrize("encoding", ["unbiased", "integer"])
def test_equals_mse_against_gaussian_heatmaps(encoding):
    pred, kp, vis, w, sigma = _inputs(3, 2, 5, 13, 11, "cpu")
    kp, vis = kp[:, 0], vis[:, 0]
    loss = heatmap_mse_loss(pred, kp, w, vis, sigma, encoding)
    target = gaussian_heatmaps(kp, vis, (13, 11), sigma, encoding, torch.float64)
    want = sum((w[:, :, None, None] * (pred[:, s] - target) ** 2).mean() for s in range(2))
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=0)
    plain = torch.nn.functional.mse_loss(pred[:, 0], target) + torch.nn.functional.mse_loss(pred[:, 1], target)
    torch.testing.assert_close(heatmap_mse_loss(pred, kp, None, vis, sigma, encoding), plain)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("B,S,K,H,W,N", [(2, 3, 16, 16, 16, 1), (1, 1, 1, 7, 9, 1), (3, 2, 4, 5, 3, 2)])
@pytest.mark.parametrize("integer", [False, True])
def test_kernel_matches_reference(device, B, S, K, H, W, N, integer):
    needs_kernel("heatmap_mse_loss", device)
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        pred, kp, vis, w, sigma = _inputs(B, S, K, H, W, device, dtype, N)
        p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        got = torch.ops.hgfast.heatmap_mse_loss(p1, kp, vis, w, sigma, integer)
        want = heatmap_mse_loss_ref(p2, kp, vis, w, sigma, integer)
        assert got.dtype == want.dtype == w.dtype and got.dim() == 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        got.backward()
        want.backward()
        tol = 1e-6 if dtype in (torch.float32, torch.float64) else 1e-2
        torch.testing.assert_close(p1.grad, p2.grad, rtol=tol, atol=tol * 1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_float64_gradients_keep_float64_range_and_precision(device):
    """A float64 loss's gradient is computed and stored in float64: beyond float32's range (1e40 ** 2 / 4) and to
    float64's precision (the targets are ~0 this far from the keypoints, so the gradient is 2 w pred / (K H W))."""
    needs_kernel("heatmap_mse_loss", device)
    pred = torch.tensor([1e40, 1e-40, 1 / 3, 1e39 / 7], dtype=torch.float64, device=device).reshape(1, 1, 1, 2, 2)
    kp = torch.full((1, 1, 1, 2), 1e3, device=device)
    vis, w, sigma = torch.ones(1, 1, 1, dtype=torch.bool, device=device), \
        torch.ones(1, 1, dtype=torch.float64, device=device), torch.ones(1, device=device)
    grad = torch.ops.hgfast.heatmap_mse_loss_backward(torch.tensor(1.0, dtype=w.dtype, device=device), pred, kp, vis, w,
                                                      sigma, False)
    torch.testing.assert_close(grad, pred / 2, rtol=1e-15, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pred, kp, vis, w, sigma = _inputs(2, 2, 3, 6, 5, device)
    pred.requires_grad_()
    assert torch.autograd.gradcheck(lambda p: heatmap_mse_loss(p, kp, w, vis, sigma), (pred,))


@pytest.mark.parametrize("device", DEVICES)
def test_weights_gradient_and_double_backward_match_the_reference(device):
    """Weights that require grad get one on the kernel path as on the reference (gradcheck in float64), and a
    gradient built with create_graph=True differentiates again: the same second derivatives on both paths."""
    needs_kernel("heatmap_mse_loss", device)
    pred, kp, vis, w, sigma = _inputs(2, 3, 4, 6, 5, device, N=2)
    p1, w1 = pred.clone().requires_grad_(), w.clone().requires_grad_()
    p2, w2 = pred.clone().requires_grad_(), w.clone().requires_grad_()
    got = torch.ops.hgfast.heatmap_mse_loss(p1, kp, vis, w1, sigma, False)
    want = heatmap_mse_loss_ref(p2, kp, vis, w2, sigma, False)
    got_grads = torch.autograd.grad(got, (p1, w1), create_graph=True)
    want_grads = torch.autograd.grad(want, (p2, w2), create_graph=True)
    for g, r in zip(got_grads, want_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-8)
    second = torch.autograd.grad((got_grads[0] ** 2).sum() + got_grads[1].sum(), (p1, w1))
    second_ref = torch.autograd.grad((want_grads[0] ** 2).sum() + want_grads[1].sum(), (p2, w2))
    for g, r in zip(second, second_ref):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-8)
    assert second[1].abs().sum() > 0
    assert torch.autograd.gradcheck(lambda p, ww: heatmap_mse_loss(p, kp, ww, vis, sigma), (p1, w1))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    needs_kernel("heatmap_mse_loss", device)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        pred, kp, vis, w, sigma = _inputs(2, 2, 3, 6, 5, device, dtype)
        torch.library.opcheck(torch.ops.hgfast.heatmap_mse_loss.default,
                              (pred.requires_grad_(), kp, vis, w, sigma, False))
        grad = torch.tensor(0.5, dtype=w.dtype, device=device)
        torch.library.opcheck(torch.ops.hgfast.heatmap_mse_loss_backward.default,
                              (grad, pred.detach(), kp, vis, w, sigma, True))


def test_weights_select_joints():
    pred, kp, vis, _, sigma = _inputs(2, 2, 4, 8, 8, "cpu")
    kp, vis = kp[:, 0], vis[:, 0]
    w = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 1]], dtype=torch.float64)
    pred2 = pred.clone()
    pred2 += 5.0 * (w == 0)[:, None, :, None, None]  # joints with weight 0 do not matter
    assert heatmap_mse_loss(pred, kp, w, vis, sigma) == heatmap_mse_loss(pred2, kp, w, vis, sigma)
    nan = heatmap_mse_loss(pred.index_fill(4, torch.tensor([0]), float("nan")), kp, w, vis, sigma)
    assert nan.isnan()  # NaN in pred propagates, as F.mse_loss


@pytest.mark.parametrize("args,err,match", [
    ((torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, 4, 2)), ValueError, "keypoints"),
    ((torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 2)), ValueError, "pred"),
    ((torch.zeros(2, 1, 3, 4, 4, dtype=torch.int64), torch.zeros(2, 3, 2)), TypeError, "pred"),
    ((torch.zeros(0, 1, 3, 4, 4), torch.zeros(0, 3, 2)), ValueError, "empty"),
    ((torch.zeros(2, 1, 3, 0, 4), torch.zeros(2, 3, 2)), ValueError, "pred must be non-empty"),
    ((torch.zeros(2, 1, 3, 4, 0), torch.zeros(2, 3, 2)), ValueError, "pred must be non-empty"),
    ((torch.zeros(2, 1, 0, 4, 4), torch.zeros(2, 0, 2)), ValueError, "pred must be non-empty"),
    ((torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, 3, 2), torch.ones(2, 4)), ValueError, "weights"),
    ((torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, 3, 2), None, torch.ones(3, 3)), ValueError, "visible"),
    ((torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, 3, 2), None, None, -1.0), ValueError, "sigma"),
    ((torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, 3, 2), None, None, 1e-24), ValueError, "sigma"),
    ((torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, 3, 2), None, None, torch.full((3,), 1e-24)), ValueError, "sigma"),
    ((torch.zeros(2, 1, 3, 4, 4), torch.full((2, 3, 2), float("nan"))), ValueError, "keypoints"),
    ((torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, 3, 2), torch.ones(2, 3, dtype=torch.complex64)), TypeError,
     "weights must be real"),
])
def test_bad_input(args, err, match):
    with pytest.raises(err, match=match):
        heatmap_mse_loss(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_unchecked_non_finite_keypoint_gets_a_zero_target(device):
    """check_keypoints=False: a visible NaN/Inf centre gives an all-zero target (the loss of an invisible joint)."""
    pred, kp, vis, w, sigma = _inputs(2, 2, 3, 6, 5, device)
    vis = torch.ones_like(vis)
    kp[0, 0, 1, 0], kp[1, 0, 2] = float("nan"), torch.tensor([float("inf"), 2.0])
    hidden = vis.clone()
    hidden[0, 0, 1] = hidden[1, 0, 2] = False
    want = heatmap_mse_loss_ref(pred, kp, hidden, w, sigma, False)
    assert want.isfinite()
    tiers = [lambda p: heatmap_mse_loss_ref(p, kp, vis, w, sigma, False),
             lambda p: heatmap_mse_loss(p, kp[:, 0], w, vis[:, 0], sigma, check_keypoints=False)]
    if _ext.op("heatmap_mse_loss", device) is not None:
        tiers.append(lambda p: torch.ops.hgfast.heatmap_mse_loss(p, kp, vis, w, sigma, False))
    p0 = pred.clone().requires_grad_()
    heatmap_mse_loss_ref(p0, kp, hidden, w, sigma, False).backward()
    for loss in tiers:
        p = pred.clone().requires_grad_()
        got = loss(p)
        torch.testing.assert_close(got, want)
        got.backward()
        torch.testing.assert_close(p.grad, p0.grad)


def test_kernel_rejects_bad_arguments():
    needs_kernel("heatmap_mse_loss", "cpu")
    pred, kp, vis, w, sigma = _inputs(1, 1, 2, 4, 4, "cpu", torch.float32)
    grad = torch.tensor(1.0)
    for shape in ((1, 0, 2, 4, 4), (1, 1, 2, 0, 4), (1, 1, 2, 4, 0)):  # S = 0 divided by zero (SIGFPE) before
        with pytest.raises(RuntimeError, match="pred must be non-empty"):
            torch.ops.hgfast.heatmap_mse_loss(torch.zeros(shape), kp, vis, w, sigma, False)
        with pytest.raises(RuntimeError, match="pred must be non-empty"):
            torch.ops.hgfast.heatmap_mse_loss_backward(grad, torch.zeros(shape), kp, vis, w, sigma, False)
    with pytest.raises(RuntimeError, match="weights must be Float"):
        torch.ops.hgfast.heatmap_mse_loss(pred, kp, vis, w.double(), sigma, False)
    with pytest.raises(RuntimeError, match="pred must be contiguous"):
        torch.ops.hgfast.heatmap_mse_loss(pred.transpose(3, 4), kp, vis, w, sigma, False)


def test_a_full_graph_compiles_the_loss_in_a_fresh_process():
    """torch.compile(fullgraph=True) of the unchecked loss with a per-joint sigma tensor, as its first call in a
    process: the extension's kernel look-up (a dispatcher query Dynamo cannot trace) and the sigma check (a
    data-dependent branch) broke the graph; they are a constant and skipped (check_keypoints=False)."""
    script = textwrap.dedent("""
        import torch
        from hgfast.ops import heatmap_mse_loss
        pred = torch.rand(2, 2, 3, 8, 9, requires_grad=True)
        kp, vis, sigma = torch.rand(2, 3, 2) * 8, torch.rand(2, 3) > 0.3, torch.tensor([1.0, 2.0, 1.5])
        loss = lambda p, k, v, s: heatmap_mse_loss(p, k, None, v, s, check_keypoints=False)
        got = torch.compile(loss, backend="aot_eager", fullgraph=True)(pred, kp, vis, sigma)
        got.backward()
        want = loss(pred.detach(), kp, vis, sigma)
        torch.testing.assert_close(got.detach(), want)
        assert pred.grad.abs().sum() > 0
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
