"""Triton upsample-add, max-pool, BN statistics and per-channel affine kernels against PyTorch references
(interpreter)."""
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.triton
pytest.importorskip("triton")  # only a missing triton skips; a broken hgfast.kernels fails
import hgfast.kernels as kernels  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def nchw(t):
    return t.permute(0, 3, 1, 2).double()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 6, 10, 5), (2, 2, 4, 17)])
def test_upsample_add_forward_backward(dtype, shape):
    n, h, w, c = shape
    skip = torch.randn(shape).to(dtype)
    low = torch.randn(n, h // 2, w // 2, c).to(dtype)
    out = kernels.upsample_add(skip, low)
    ref = nchw(skip) + F.interpolate(nchw(low), scale_factor=2.0, mode="nearest")
    # One rounding of the fp32 sum to the output dtype.
    tol = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype] * ref.abs().max().item()
    torch.testing.assert_close(nchw(out), ref, rtol=0, atol=tol)
    g = torch.randn(shape).to(dtype)
    lowd = nchw(low).requires_grad_()
    (nchw(skip) + F.interpolate(lowd, scale_factor=2.0, mode="nearest")).backward(nchw(g))
    grad_low = kernels.upsample_add_backward(g)
    tol = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype] * lowd.grad.abs().max().item()
    torch.testing.assert_close(nchw(grad_low), lowd.grad, rtol=0, atol=tol)


def test_upsample_add_bad_inputs():
    with pytest.raises(ValueError, match="low must be"):
        kernels.upsample_add(torch.randn(1, 5, 4, 3), torch.randn(1, 2, 2, 3))
    with pytest.raises(TypeError, match="low must have dtype"):
        kernels.upsample_add(torch.randn(1, 4, 4, 3), torch.randn(1, 2, 2, 3).half())
    with pytest.raises(ValueError, match="grad_out must have even"):
        kernels.upsample_add_backward(torch.randn(1, 3, 4, 2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 6, 10, 5), (1, 7, 5, 17), (3, 2, 3, 1)])
def test_maxpool2x2_forward_backward_and_statistics(dtype, shape):
    """Values, gradients and the output's statistics against F.max_pool2d in float64 on the CPU: ties (small
    integers) go to the window's first maximum, NaN propagates and takes the gradient (the last NaN of its window),
    odd last rows and columns are not pooled and get no gradient."""
    n, h, w, c = shape
    x = torch.randint(-2, 3, shape).to(dtype)
    x[0, 0, 0, 0] = x[0, 1, 1, 0] = float("nan")  # one window with two NaNs
    y, partial = kernels.maxpool2x2(x, stats=True)
    ref_in = nchw(x).cpu().requires_grad_()
    ref = F.max_pool2d(ref_in, 2, 2)
    torch.testing.assert_close(nchw(y).cpu(), ref.detach(), rtol=0, atol=0, equal_nan=True)
    assert kernels.maxpool2x2(x)[1] is None and torch.equal(kernels.maxpool2x2(x)[0].isnan(), y.isnan())
    g = torch.randn(y.shape).to(dtype)
    ref.backward(nchw(g).cpu())
    torch.testing.assert_close(nchw(kernels.maxpool2x2_backward(x, g)).cpu(), ref_in.grad, rtol=0, atol=0)
    finite = torch.nan_to_num(x, nan=0.5)  # statistics: those of the stored output (channel_stats of y)
    y, partial = kernels.maxpool2x2(finite, stats=True)
    mean, var = kernels.finalize_stats(partial)
    yd = nchw(y).permute(0, 2, 3, 1).reshape(-1, c)
    torch.testing.assert_close(mean.double(), yd.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(var.double(), yd.var(0, unbiased=False), rtol=1e-5, atol=1e-6)


def test_maxpool2x2_bad_inputs():
    with pytest.raises(ValueError, match="at least 2x2"):
        kernels.maxpool2x2(torch.randn(1, 1, 4, 3))
    with pytest.raises(ValueError, match="x must be 4-D"):
        kernels.maxpool2x2(torch.randn(4, 4, 3))
    with pytest.raises(ValueError, match=r"grad_out must be \(N, H // 2, W // 2, C\)"):
        kernels.maxpool2x2_backward(torch.randn(1, 4, 4, 3), torch.randn(1, 3, 2, 3))
    with pytest.raises(TypeError, match="grad_out must have dtype"):
        kernels.maxpool2x2_backward(torch.randn(1, 4, 4, 3), torch.randn(1, 2, 2, 3).half())
    empty, partial = kernels.maxpool2x2(torch.randn(0, 4, 4, 3), stats=True)
    assert empty.shape == (0, 2, 2, 3) and partial.shape == (3, 0, 3)
    assert kernels.maxpool2x2_backward(torch.randn(0, 4, 4, 3), empty).shape == (0, 4, 4, 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_channel_stats_chan_merge(dtype):
    """Many partial tiles (M = 4*9*13 = 468 rows: 30 tiles, the last partial; under the interpreter 2 chunks of
    finaliser tiles, the last partial) merged in order; large mean offset."""
    x = (torch.randn(4, 9, 13, 11) * 3 + 100).to(dtype)
    partial = kernels.channel_stats(x)
    assert partial.shape[0] == 3 and partial.shape[1] > 16
    mean, var = kernels.finalize_stats(partial)
    xd = x.double().reshape(-1, 11)
    torch.testing.assert_close(mean.double(), xd.mean(0), rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(var.double(), xd.var(0, unbiased=False), rtol=1e-4, atol=1e-4)
    again = kernels.finalize_stats(kernels.channel_stats(x))
    assert torch.equal(again[0], mean) and torch.equal(again[1], var)  # deterministic


def random_partials(t, c):
    """``(3, t, c)`` partials of uneven tiles (counts 1..40) and the float64 statistics of their union."""
    counts = torch.randint(1, 41, (t,))
    tiles = [torch.randn(int(n), c, dtype=torch.float64) * 2 + 7 + torch.randn(c, dtype=torch.float64)
             for n in counts]
    partial = torch.stack([torch.stack([torch.full((c,), float(v.shape[0])), v.mean(0), v.var(0, unbiased=False)
                                        * v.shape[0]]) for v in tiles], 1).float()
    union = torch.cat(tiles)
    return partial.contiguous(), union.mean(0), union.var(0, unbiased=False)


@pytest.mark.parametrize("t,c", [(1, 3), (37, 21), (16, 16)])
def test_bn_train_coeffs(t, c):
    partial, mean, var = random_partials(t, c)
    gamma, beta, eps = torch.randn(c), torch.randn(c), 1e-3
    out = kernels.bn_train_coeffs(partial, gamma, beta, eps).double()
    scale = gamma.double() / (var + eps).sqrt()
    ref = torch.stack([mean, var, scale, beta.double() - mean * scale])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(kernels.bn_train_coeffs(partial)[:2].double(), out[:2])
    with pytest.raises(ValueError, match="gamma and beta"):
        kernels.bn_train_coeffs(partial, gamma)
    with pytest.raises(ValueError, match="beta must be"):
        kernels.bn_train_coeffs(partial, gamma, beta[:-1])


@pytest.mark.parametrize("t,c", [(1, 3), (37, 21)])
def test_bn_backward_coeffs(t, c):
    sums = torch.randn(2, t, c)
    mean, var, gamma = torch.randn(c), torch.rand(c) + 0.1, torch.randn(c)
    eps, count = 1e-5, 1000
    out = kernels.bn_backward_coeffs(sums, mean, var, gamma, eps, count).double()
    sum_dv, sum_dvxc = sums.double().sum(1)
    invstd = (var.double() + eps).rsqrt()
    a = gamma.double() * invstd
    b = -a * invstd ** 2 * sum_dvxc / count
    ref = torch.stack([a, b, -a * sum_dv / count - mean.double() * b, sum_dvxc * invstd, sum_dv])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="count must be"):
        kernels.bn_backward_coeffs(sums, mean, var, gamma, eps, 0)
    with pytest.raises(ValueError, match="sums must be"):
        kernels.bn_backward_coeffs(sums[0], mean, var, gamma, eps, count)


def test_finalize_bad_partial():
    with pytest.raises(ValueError, match="partial must be"):
        kernels.finalize_stats(torch.zeros(2, 3, 4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bn_relu_and_backward_apply(dtype):
    x, g, add = (torch.randn(2, 5, 7, 37).to(dtype) for _ in range(3))  # several row and channel tiles
    s, t, r = torch.randn(37), torch.randn(37), torch.randn(37)
    tol = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    ref = F.relu(nchw(x) * s[:, None, None].double() + t[:, None, None].double())
    torch.testing.assert_close(nchw(kernels.bn_relu(x, s, t)), ref, rtol=tol, atol=tol)
    ref = (nchw(g) * s[:, None, None].double() + nchw(x) * t[:, None, None].double() + r[:, None, None].double()
           + nchw(add))
    torch.testing.assert_close(nchw(kernels.bn_backward_apply(g, x, s, t, r, add)), ref, rtol=tol, atol=4 * tol)
    with pytest.raises(ValueError, match="scale must be"):
        kernels.bn_relu(x, s[:3], t)


def test_every_launcher_runs_on_its_tensors_device():
    """Triton launches on the current CUDA device: every launcher makes its first tensor's device current."""
    for name in kernels.__all__:
        assert getattr(getattr(kernels, name), "on_tensor_device", False), name


@pytest.mark.gpu
def test_launch_on_a_device_that_is_not_current():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    with torch.cuda.device(0):
        x = torch.randn(1, 4, 6, 8, device="cuda:1")
        s, t = torch.rand(8, device="cuda:1") + 0.5, torch.randn(8, device="cuda:1")
        y = kernels.bn_relu(x, s, t)
        torch.testing.assert_close(y, torch.relu(x * s + t), rtol=1e-6, atol=1e-6)
        mean, var = kernels.finalize_stats(kernels.channel_stats(x))
        torch.testing.assert_close(mean, x.mean((0, 1, 2)), rtol=1e-5, atol=1e-5)
