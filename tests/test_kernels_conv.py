"""Triton conv kernels (forward, data gradient, weight gradient) against float64 PyTorch references.

Runs under TRITON_INTERPRET=1 on CPU. Inputs are rounded to the tested dtype first, so the reference sees the same
numbers; remaining error comes from rounding of intermediates (the BN-ReLU prologue output is rounded to the I/O
dtype before the product, like a materialised activation) and of the output. Tolerances, relative to the max |ref|:
fp32 1e-5 (fp32 accumulation, K <= 63), fp16 4e-3 (11-bit mantissa), bf16 3e-2 (8-bit mantissa).
"""
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.triton
pytest.importorskip("triton")  # only a missing triton skips; a broken hgfast.kernels fails
import hgfast.kernels as kernels  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
RTOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def nchw(t):
    return t.permute(0, 3, 1, 2).double()


def vec(c, lo=0.5):
    return torch.rand(c) + lo


def close(actual, ref, dtype, what):
    ref = ref.double()
    err = (actual.double() - ref).abs().max().item()
    scale = max(ref.abs().max().item(), 1e-6)
    assert err <= RTOL[dtype] * scale, f"{what}: max error {err:.3g} > {RTOL[dtype]} * {scale:.3g}"


def rnd(shape, dtype):
    return torch.randn(shape).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("n,h,w", [(1, 6, 10), (2, 4, 6)])
def test_conv_fwd_prologue_bias_stats(dtype, k, n, h, w):
    cin, cout = 5, 7
    x, wt = rnd((n, h, w, cin), dtype), rnd((cout, cin, k, k), dtype)
    b, s, t = torch.randn(cout), vec(cin), torch.randn(cin)
    y, partial = kernels.conv2d_fwd(x, wt, b, s, t, stats=True)
    u = F.relu(nchw(x) * s[:, None, None].double() + t[:, None, None].double()).to(dtype).double()
    ref = F.conv2d(u, wt.double(), b.double(), padding=k // 2)
    close(nchw(y), ref, dtype, "y")
    mean, var = kernels.finalize_stats(partial)
    yd = nchw(y)  # statistics are of the stored values
    torch.testing.assert_close(mean.double(), yd.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(var.double(), yd.var((0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("n,h,w", [(1, 6, 10), (2, 4, 6)])
def test_conv_fwd_epilogue_affine_residual_upsample(dtype, k, n, h, w):
    check_fwd_epilogue(dtype, k, n, h, w, 6, 5)


@pytest.mark.parametrize("where", ["prologue", "epilogue", "bn_relu"])
def test_fused_relus_pass_nan_through_as_f_relu(where):
    """relu(NaN) is NaN, as ``F.relu``: a diverging run shows up in the loss instead of being zeroed. (The GPU's
    ``max.f32``, ``tl.maximum``'s default, returns 0 for it; the interpreter's numpy maximum never differed.)"""
    x, wt = rnd((1, 4, 4, 3), torch.float32), rnd((2, 3, 1, 1), torch.float32)
    x[0, 1, 2, 0] = float("nan")
    s, t = torch.ones(3), torch.zeros(3)
    if where == "bn_relu":
        y = kernels.bn_relu(x, s, t)
    elif where == "prologue":
        y = kernels.conv2d_fwd(x, wt, pro_scale=s, pro_shift=t)[0]
    else:
        y = kernels.conv2d_fwd(x, wt, epi_scale=torch.ones(2), epi_shift=torch.zeros(2))[0]
    nan = torch.isnan(y)
    if where == "bn_relu":  # per element
        assert torch.equal(nan, torch.isnan(x))
    else:  # every output channel of that pixel (a 1x1 conv), no other
        assert nan[0, 1, 2].all() and nan.sum() == nan[0, 1, 2].numel()


def check_fwd_epilogue(dtype, k, n, h, w, cin, cout):
    """conv2d_fwd with BN-ReLU epilogue, residual add and upsampled low add against float64."""
    x, wt = rnd((n, h, w, cin), dtype), rnd((cout, cin, k, k), dtype)
    b, es, et = torch.randn(cout), vec(cout), torch.randn(cout)
    res, low = rnd((n, h, w, cout), dtype), rnd((n, h // 2, w // 2, cout), dtype)
    y, partial = kernels.conv2d_fwd(x, wt, b, epi_scale=es, epi_shift=et, residual=res, low=low)
    assert partial is None
    ref = F.conv2d(nchw(x), wt.double(), b.double(), padding=k // 2)
    ref = F.relu(ref * es[:, None, None].double() + et[:, None, None].double())
    ref = ref + nchw(res) + F.interpolate(nchw(low), scale_factor=2.0, mode="nearest")
    close(nchw(y), ref, dtype, "y")


def test_conv3x3_padding_after_prologue():
    """A shift that makes relu(shift) > 0 must not leak into the zero padding of the 3x3 border taps."""
    x = torch.zeros(1, 3, 5, 2)
    wt = torch.ones(1, 2, 3, 3)
    y, _ = kernels.conv2d_fwd(x, wt, pro_scale=torch.ones(2), pro_shift=torch.full((2,), 1.0))
    # Each output sums relu(0 * 1 + 1) = 1 over its in-image taps and 2 channels.
    taps = F.conv2d(torch.ones(1, 1, 3, 5), torch.ones(1, 1, 3, 3), padding=1)
    torch.testing.assert_close(y[..., 0], 2 * taps[0], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("pending", [False, True])
def test_conv_dgrad_mask_and_bn_sums(dtype, k, pending):
    n, h, w, cin, cout = 1, 6, 10, 7, 5
    x, wt = rnd((n, h, w, cin), dtype), rnd((cout, cin, k, k), dtype)
    s, t, mean = vec(cin), torch.randn(cin) * 0.5, torch.randn(cin)
    dy = rnd((n, h, w, cout), dtype)
    g = nchw(dy)
    dy_pending = None
    if pending:
        x2, a, b, c = rnd((n, h, w, cout), dtype), torch.randn(cout), torch.randn(cout), torch.randn(cout)
        dy_pending = (x2, a, b, c)
        g = g * a[:, None, None].double() + nchw(x2) * b[:, None, None].double() + c[:, None, None].double()
        g = g.to(dtype).double()  # the kernel rounds the prologue output to the I/O dtype
    dv, sums = kernels.conv2d_dgrad(dy, wt, x, s, t, mean, dy_pending=dy_pending)
    v = (nchw(x) * s[:, None, None].double() + t[:, None, None].double()).requires_grad_()
    F.conv2d(F.relu(v), wt.double(), padding=k // 2).backward(g)
    close(nchw(dv), v.grad, dtype, "dv")
    dvd = nchw(dv)
    torch.testing.assert_close(sums[0].sum(0).double(), dvd.sum((0, 2, 3)), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(sums[1].sum(0).double(),
                               (dvd * (nchw(x) - mean[:, None, None].double())).sum((0, 2, 3)), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("k", [1, 3])
def test_conv_dgrad_add_before_mask(dtype, k):
    """``add`` (the gradient of the BN-ReLU output from a second consumer) joins ``du`` before the ReLU mask."""
    n, h, w, cin, cout = 1, 4, 6, 6, 3
    x, wt = rnd((n, h, w, cin), dtype), rnd((cout, cin, k, k), dtype)
    s, t, mean = vec(cin), torch.randn(cin) * 0.5, torch.randn(cin)
    dy, add = rnd((n, h, w, cout), dtype), rnd((n, h, w, cin), dtype)
    dv, sums = kernels.conv2d_dgrad(dy, wt, x, s, t, mean, add=add)
    v = (nchw(x) * s[:, None, None].double() + t[:, None, None].double()).requires_grad_()
    u = F.relu(v)
    (F.conv2d(u, wt.double(), padding=k // 2) * nchw(dy)).sum().add((u * nchw(add)).sum()).backward()
    close(nchw(dv), v.grad, dtype, "dv")
    torch.testing.assert_close(sums[0].sum(0).double(), nchw(dv).sum((0, 2, 3)), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="add must be"):
        kernels.conv2d_dgrad(dy, wt, x, s, t, mean, add=add[..., :-1].contiguous())


@pytest.mark.parametrize("k", [1, 3])
def test_conv_dgrad_plain(k):
    n, h, w, cin, cout = 2, 5, 7, 6, 9
    dy, wt = torch.randn(n, h, w, cout), torch.randn(cout, cin, k, k)
    du, sums = kernels.conv2d_dgrad(dy, wt)
    u = torch.zeros(n, cin, h, w, dtype=torch.float64, requires_grad=True)
    F.conv2d(u, wt.double(), padding=k // 2).backward(nchw(dy))
    assert sums is None
    close(nchw(du), u.grad, torch.float32, "du")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("pending", [False, True])
def test_conv_wgrad_recompute_bn_relu(dtype, k, pending):
    n, h, w, cin, cout = 2, 6, 6, 5, 6
    x, dy = rnd((n, h, w, cin), dtype), rnd((n, h, w, cout), dtype)
    s, t = vec(cin), torch.randn(cin) * 0.5
    g = nchw(dy)
    dy_pending = None
    if pending:
        x2, a, b, c = rnd((n, h, w, cout), dtype), torch.randn(cout), torch.randn(cout), torch.randn(cout)
        dy_pending = (x2, a, b, c)
        g = (g * a[:, None, None].double() + nchw(x2) * b[:, None, None].double()
             + c[:, None, None].double()).to(dtype).double()
    dw, db = kernels.conv2d_wgrad(x, dy, k, s, t, dy_pending=dy_pending)
    u = F.relu(nchw(x) * s[:, None, None].double() + t[:, None, None].double()).to(dtype).double()
    wt = torch.zeros(cout, cin, k, k, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(cout, dtype=torch.float64, requires_grad=True)
    F.conv2d(u, wt, bias, padding=k // 2).backward(g)
    close(dw, wt.grad, dtype, "dweight")
    close(db, bias.grad, dtype, "dbias")


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_wide_channels_fwd_dgrad_wgrad(dtype):
    """Cin 40, Cout 33 (3x3): several K blocks accumulated and several N tiles in every GEMM, in every dtype
    (the other cases have fewer channels than one interpreter tile); tiny spatial size to stay fast."""
    check_fwd_dgrad_wgrad(dtype, 1, 2, 3, 40, 33)


def check_fwd_dgrad_wgrad(dtype, n, h, w, cin, cout):
    """A 3x3 conv with the BN-ReLU prologue: forward, data gradient (ReLU mask, BN sums) and weight gradient
    (BN-ReLU recomputed) against float64."""
    x, wt, dy = rnd((n, h, w, cin), dtype), rnd((cout, cin, 3, 3), dtype), rnd((n, h, w, cout), dtype)
    b, s, t, mean = torch.randn(cout), vec(cin), torch.randn(cin) * 0.5, torch.randn(cin)
    y, _ = kernels.conv2d_fwd(x, wt, b, s, t)
    v = (nchw(x) * s[:, None, None].double() + t[:, None, None].double()).requires_grad_()
    u = F.relu(v).to(dtype).double()
    close(nchw(y), F.conv2d(u, wt.double(), b.double(), padding=1), dtype, "y")
    dv, _ = kernels.conv2d_dgrad(dy, wt, x, s, t, mean)
    F.conv2d(F.relu(v), wt.double(), padding=1).backward(nchw(dy))
    close(nchw(dv), v.grad, dtype, "dv")
    dw, db = kernels.conv2d_wgrad(x, dy, 3, s, t)
    wd = torch.zeros(cout, cin, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(cout, dtype=torch.float64, requires_grad=True)
    F.conv2d(u, wd, bias, padding=1).backward(nchw(dy))
    close(dw, wd.grad, dtype, "dweight")
    close(db, bias.grad, dtype, "dbias")


def test_conv_wgrad_plain_no_bias():
    x, dy = torch.randn(1, 6, 10, 8), torch.randn(1, 6, 10, 3)
    dw, db = kernels.conv2d_wgrad(x, dy, 3, bias=False)
    wt = torch.zeros(3, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    F.conv2d(nchw(x), wt, padding=1).backward(nchw(dy))
    assert db is None
    close(dw, wt.grad, torch.float32, "dweight")


@pytest.mark.skipif(not hasattr(torch.backends.cudnn, "conv"), reason="torch < 2.9: only allow_tf32")
def test_fp32_gemms_follow_the_cudnn_conv_tf32_setting_of_either_api():
    """TF32 as cuDNN convolutions use it, set by the legacy ``allow_tf32`` or the ``fp32_precision`` API, mixed
    (reading ``allow_tf32`` itself raises once conv and RNN differ)."""
    from hgfast.kernels.common import cudnn_conv_tf32

    b = torch.backends
    knobs = (b, b.cudnn, b.cudnn.conv, b.cudnn.rnn)  # restored parents first: a parent's setter may set its children
    saved = [k.fp32_precision for k in knobs]
    try:
        assert cudnn_conv_tf32() == (b.cudnn.conv.fp32_precision == "tf32")
        b.cudnn.allow_tf32 = False
        assert not cudnn_conv_tf32()
        b.cudnn.allow_tf32 = True
        assert cudnn_conv_tf32()
        b.cudnn.conv.fp32_precision = "ieee"  # conv and RNN now differ
        with pytest.raises(RuntimeError):
            b.cudnn.allow_tf32
        assert not cudnn_conv_tf32()
        b.fp32_precision = "tf32"  # sets every backend's
        b.cudnn.conv.fp32_precision = "none"  # conv inherits cuDNN's
        assert cudnn_conv_tf32()
        b.cudnn.fp32_precision = "ieee"
        assert not cudnn_conv_tf32()
        b.cudnn.fp32_precision = "none"  # and the global one through it
        assert cudnn_conv_tf32()
    finally:
        for knob, value in zip(knobs, saved):
            knob.fp32_precision = value
    assert b.cudnn.allow_tf32 == (saved[2] == "tf32")  # restored: the legacy flag reads again


def test_conv_bad_inputs_name_the_argument():
    x, wt = torch.randn(1, 4, 4, 3), torch.randn(2, 3, 1, 1)
    with pytest.raises(ValueError, match="x must be 4-D"):
        kernels.conv2d_fwd(x[0], wt)
    with pytest.raises(ValueError, match="weight must be"):
        kernels.conv2d_fwd(x, torch.randn(2, 4, 1, 1))
    with pytest.raises(ValueError, match="weight must be"):
        kernels.conv2d_fwd(x, torch.randn(2, 3, 5, 5))
    with pytest.raises(TypeError, match="weight must be float32, float16 or bfloat16"):
        kernels.conv2d_fwd(x, wt.double())
    with pytest.raises(ValueError, match="packed must be"):
        kernels.conv2d_fwd(x, torch.randn(2, 3, 3, 3), packed=torch.randn(3, 3, 2, 3))
    with pytest.raises(TypeError, match="x must be float32"):
        kernels.conv2d_fwd(x.double(), wt.double())
    with pytest.raises(ValueError, match="contiguous NHWC"):
        kernels.conv2d_fwd(x.transpose(1, 2), wt)
    with pytest.raises(ValueError, match="bias must be"):
        kernels.conv2d_fwd(x, wt, torch.randn(3))
    with pytest.raises(ValueError, match="low must be"):
        kernels.conv2d_fwd(x, wt, low=torch.randn(1, 4, 4, 2))
    with pytest.raises(ValueError, match="in pairs"):
        kernels.conv2d_fwd(x, wt, pro_scale=torch.ones(3))
    with pytest.raises(ValueError, match="x must be"):
        kernels.conv2d_dgrad(torch.randn(1, 4, 4, 2), wt, x=torch.randn(1, 4, 4, 5), scale=torch.ones(3),
                             shift=torch.ones(3), mean=torch.ones(3))
    with pytest.raises(ValueError, match="kernel_size"):
        kernels.conv2d_wgrad(x, torch.randn(1, 4, 4, 2), 2)


@pytest.mark.parametrize("bias", [True, False])
def test_wgrad_of_an_empty_batch_is_zero(bias):
    """No rows to reduce (an empty batch through the merge convs' backward): zero gradients, as ATen's, not a
    division by zero in the row split."""
    x, dy = torch.randn(0, 4, 4, 5), torch.randn(0, 4, 4, 3)
    for k in (1, 3):
        dw, db = kernels.conv2d_wgrad(x, dy, k, torch.ones(5), torch.zeros(5), bias=bias)
        assert dw.shape == (3, 5, k, k) and not dw.any()
        assert (db is None) != bias and (db is None or (db.shape == (3,) and not db.any()))


def test_check_nhwc_rejects_int32_overflowing_tensors():
    """Offsets are int32 (``row * C + col``): 2**31 elements or more are refused, naming the argument (meta tensors,
    so nothing is allocated)."""
    from hgfast.kernels.common import check_nhwc

    check_nhwc("x", torch.empty(1, 2 ** 15, 2 ** 8, 2 ** 8 - 1, device="meta"))  # 2**31 - 2**23 elements: fine
    with pytest.raises(ValueError, match="x has 2147483648 elements"):
        check_nhwc("x", torch.empty(1, 2 ** 15, 2 ** 8, 2 ** 8, device="meta"))
    with pytest.raises(ValueError, match="residual has"):
        check_nhwc("residual", torch.empty(2, 2 ** 14, 2 ** 8, 2 ** 8, device="meta", dtype=torch.float16))


def test_conv_launchers_reject_int32_overflowing_outputs():
    """With more output than input channels the output can overflow where the input does not: the stem's 64->128
    skip conv at batch 1025, 128x128 (meta tensors: refused before anything is allocated or launched)."""
    x = torch.empty(1025, 128, 128, 64, device="meta", dtype=torch.float16)  # half the limit: fine
    with pytest.raises(ValueError, match=r"output y has 2149580800 elements, shape \(1025, 128, 128, 128\)"):
        kernels.conv2d_fwd(x, torch.empty(128, 64, 1, 1, device="meta", dtype=torch.float16))
    with pytest.raises(ValueError, match="output dv has 2149580800 elements.*int32"):  # dgrad without x: no input check
        kernels.conv2d_dgrad(x, torch.empty(64, 128, 1, 1, device="meta", dtype=torch.float16))


@pytest.mark.parametrize("m,bm,tiles", [(72, 16, 1), (131072, 128, 4), (131072, 128, 18), (512, 64, 8), (1, 16, 1)])
def test_wgrad_row_split_covers_every_row_once(m, bm, tiles, monkeypatch):
    """Splits tile the rows exactly (the last may be short), in multiples of bm; on a 132-SM GPU each is at least 4
    row tiles unless there is one, and the plan asks for ~264 programs; on CPU (the interpreter) there are splits
    wherever there are several row tiles, so the other wgrad tests cover the split path."""
    from hgfast.kernels import conv_wgrad

    for device, sms in ((torch.device("cpu"), None), (torch.device("cuda", 0), 132)):
        if sms:
            monkeypatch.setattr(conv_wgrad, "sm_count", lambda device: sms)
            monkeypatch.setattr(conv_wgrad, "interpreting", lambda: False)
        splits, rows = conv_wgrad.row_split(m, bm, tiles, device)
        assert rows % bm == 0 and (splits - 1) * rows < m <= splits * rows
        assert splits == 1 or rows >= (4 if sms else 1) * bm
        if not sms:
            assert splits > 1 or m <= bm
        if sms and m == 131072:
            assert 0.9 * 264 <= splits * tiles <= 264 + tiles


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("k", [1, 3])
def test_weights_in_any_float_dtype_layout_or_packing(dtype, k):
    """An fp32 weight for bf16 activations (AMP), channels_last weight strides, and a 3x3 weight packed once and
    reused: all give exactly the result of the weight cast to the activation dtype. (1x1 weights are cast in the
    kernel; the interpreter casts fp32 -> bf16 toward zero where the GPU rounds to nearest, so there the reference
    weight is truncated the same way.)"""
    from hgfast.kernels.conv import pack_weight

    n, h, w, cin, cout = 2, 4, 6, 5, 7
    x, dy = rnd((n, h, w, cin), dtype), rnd((n, h, w, cout), dtype)
    wt = torch.randn(cout, cin, k, k)
    cast = wt.to(dtype)
    if dtype == torch.bfloat16 and k == 1 and x.device.type == "cpu":
        cast = (wt.view(torch.int32) & ~0xFFFF).view(torch.float32).to(dtype)
    y_ref, _ = kernels.conv2d_fwd(x, cast)
    dx_ref, _ = kernels.conv2d_dgrad(dy, cast)
    variants = [wt, wt.to(memory_format=torch.channels_last)]
    if k == 3:
        variants.append(pack_weight(wt, dtype))
    for variant in variants:
        packed = variant if variant.shape[0] == k else None
        weight = wt if packed is not None else variant
        assert torch.equal(kernels.conv2d_fwd(x, weight, packed=packed)[0], y_ref)
        assert torch.equal(kernels.conv2d_dgrad(dy, weight, packed=packed)[0], dx_ref)


def test_autotune_pruning_fits_the_gpus_shared_memory_and_the_channels():
    """The GPU config list, pruned for the wgrad of a 1x1 conv: bf16 256->128 keeps every tile on sm_90; fp32 with
    128-row tiles and a two-tensor dy prologue drops those over the launch's shared-memory budget (on sm_90, the
    ones .ci/triton_sm90_check found at up to 426 KB), and a 99 KB GPU (sm_89) drops more, bf16 ones too; when
    none fits, the smallest (last) is kept; 16 output channels keep only 32-wide N tiles."""
    import triton

    from hgfast.kernels import conv_wgrad
    from hgfast.kernels.common import SM90_SHARED_MEMORY, only_config

    configs = [triton.Config({"BN": bn, "BK": bk}, num_warps=w, num_stages=s)
               for bn, bk, w, s in ((64, 32, 4, 3), (128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 4), (32, 32, 4, 2))]
    prune = conv_wgrad.conv_wgrad_kernel.early_config_prune

    def kept(dtype, cin, cout, bm, pro_dy, smem=SM90_SHARED_MEMORY):
        x, dy = torch.empty(0, dtype=dtype), torch.empty(0, dtype=dtype)
        return prune(configs, {"x_ptr": x, "dy_ptr": dy, "CIN": cin, "COUT": cout, "SMEM": smem}, BM=bm,
                     PRO_DY=pro_dy)

    def stage_bytes(c, size):
        return 0.92 * c.num_stages * 128 * (c.kwargs["BK"] + 2 * c.kwargs["BN"]) * size

    assert kept(torch.bfloat16, 256, 128, 128, 2) == configs
    fp32 = kept(torch.float32, 256, 128, 128, 2)
    assert 0 < len(fp32) < len(configs)
    assert all(stage_bytes(c, 4) <= SM90_SHARED_MEMORY for c in fp32)
    sm89 = 99 * 1024
    bf16_sm89 = kept(torch.bfloat16, 256, 128, 128, 2, sm89)
    assert 0 < len(bf16_sm89) < len(configs) and all(stage_bytes(c, 2) <= sm89 for c in bf16_sm89)
    assert kept(torch.float32, 256, 128, 128, 2, 16 * 1024) == configs[-1:]
    assert {c.kwargs["BN"] for c in kept(torch.bfloat16, 256, 16, 64, 0)} == {32}

    with only_config(2):
        assert kept(torch.bfloat16, 256, 128, 128, 2) == [configs[2]]
        assert kept(torch.float32, 256, 128, 128, 2) == [fp32[min(2, len(fp32) - 1)]]
    with only_config(99):
        assert kept(torch.bfloat16, 256, 128, 128, 2) == [configs[-1]]


def test_shared_memory_budget_is_the_gpus_opt_in_maximum(monkeypatch):
    """CPU tensors (the interpreter, the sm_90 compile check) get an sm_90 block's budget; a CUDA tensor its GPU's
    opt-in maximum (as Triton's driver reports it), queried once per device index."""
    from triton.runtime.driver import driver

    from hgfast.kernels import common

    assert common.shared_memory(torch.device("cpu")) == 227 * 1024
    queried = []

    class Driver:  # a stand-in for Triton's CUDA driver on a 99 KB GPU (sm_89)
        class utils:
            @staticmethod
            def get_device_properties(index):
                queried.append(index)
                return {"max_shared_mem": 101376}

    monkeypatch.setattr(driver, "_active", Driver())
    common._shared_memory.cache_clear()
    try:
        assert common.shared_memory(torch.device("cuda", 1)) == 101376
        assert common.shared_memory(torch.device("cuda", 1)) == 101376
        assert queried == [1]
    finally:
        common._shared_memory.cache_clear()


def test_autotune_off_takes_the_first_fitting_config(monkeypatch):
    import triton

    from hgfast.kernels import conv

    configs = [triton.Config({"BN": bn, "BK": 32}, num_warps=4, num_stages=3) for bn in (128, 64, 32)]
    prune = conv.conv_fwd_kernel.early_config_prune
    bf16 = torch.empty(0, dtype=torch.bfloat16)
    args = {"x_ptr": bf16, "w_ptr": bf16, "CIN": 64, "COUT": 48, "SMEM": 227 * 1024}
    assert prune(configs, args, BM=64) == configs[1:]  # BN 128 > 64 (48 channels, rounded up): pruned
    monkeypatch.setenv("HGFAST_AUTOTUNE", "0")
    assert prune(configs, args, BM=64) == configs[1:2]


@pytest.fixture
def two_configs(monkeypatch):
    """The GEMM kernels with two interpreter configs (the interpreter's list has one, which never reaches the
    autotuner's choice) and a stand-in benchmark recording what it times (all equal: the first wins)."""
    import triton

    from hgfast.kernels import common, conv, conv_dgrad, conv_wgrad

    config = common._INTERPRETER_CONFIG
    twins = [config, triton.Config(dict(config.kwargs), num_warps=2, num_stages=config.num_stages)]
    timed = []
    for kernel in (conv.conv_fwd_kernel, conv_dgrad.conv_dgrad_kernel, conv_wgrad.conv_wgrad_kernel):
        monkeypatch.setattr(kernel, "configs", twins)
        monkeypatch.setattr(kernel, "_bench", lambda *a, config, **k: timed.append(config) or 1.0)
    common._forget_choices()
    yield twins, timed
    common._forget_choices()


def test_one_config_left_is_launched_without_a_benchmark(two_configs, monkeypatch):
    """Triton's autotuner benchmarks every new key even when pruning leaves one config (25 ms warm-up + 100 ms of
    repeats on a GPU): with HGFAST_AUTOTUNE=0, launch_tuned calls that config directly, once per key."""
    from hgfast.kernels import common

    twins, timed = two_configs
    x, wt = rnd((1, 4, 4, 8), torch.float32), rnd((8, 8, 1, 1), torch.float32)
    monkeypatch.setenv("HGFAST_AUTOTUNE", "0")
    close(kernels.conv2d_fwd(x, wt)[0], F.conv2d(nchw(x), wt.double()).permute(0, 2, 3, 1), torch.float32, "one config")
    assert timed == [] and list(common._chosen.values()) == [twins[0].all_kwargs()]
    monkeypatch.setenv("HGFAST_AUTOTUNE", "1")  # both kept: the autotuner times them (another M key)
    kernels.conv2d_fwd(rnd((3, 4, 4, 8), torch.float32), wt)
    assert timed == twins


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("index", range(5))
def test_every_gpu_config_matches_the_reference(dtype, index):
    """The GPU tests may run with HGFAST_AUTOTUNE=0 (first config only, to keep compile time in bounds); this
    runs every config of the GPU list through the forward (prologue, statistics, epilogue adds), dgrad and
    wgrad at sizes with several row, N and K tiles."""
    from hgfast.kernels.common import only_config

    with only_config(index):
        check_fwd_epilogue(dtype, 3, 2, 12, 20, 72, 96)
        check_fwd_dgrad_wgrad(dtype, 2, 12, 20, 96, 80)


def test_batch_sizes_up_to_a_power_of_two_share_one_tuning(two_configs):
    """The autotune key rounds M up to a power of two (``tune_key``): batches of 3 and 4 (M 48 and 64) are timed
    once, 5 (M 80) again; each result still matches the reference."""
    from hgfast.kernels.common import tune_key

    assert tune_key(48, 64) == tune_key(64, 64) != tune_key(80, 64) and tune_key(20000, 64) != tune_key(20000, 128)
    twins, timed = two_configs
    wt = rnd((6, 5, 3, 3), torch.float32)
    for n, times in ((3, 1), (4, 1), (5, 2), (8, 2)):
        x = rnd((n, 4, 4, 5), torch.float32)
        close(kernels.conv2d_fwd(x, wt)[0], F.conv2d(nchw(x), wt.double(), padding=1).permute(0, 2, 3, 1),
              torch.float32, f"batch {n}")
        assert timed == twins * times, n


def test_gemm_launches_reuse_the_autotuners_choice_without_asking_it_again(two_configs, monkeypatch):
    """``launch_tuned``: the first launch with a key goes through the autotuner and records its config; later ones
    call the kernel with it directly (same result). Where ``Autotuner.run`` is replaced and sets no config (the
    sm_90 compile check), nothing is recorded and every launch keeps going through it."""
    from triton.runtime import autotuner
    from hgfast.kernels import common

    x, wt = rnd((2, 4, 6, 5), torch.float32), torch.randn(7, 5, 3, 3)
    monkeypatch.setattr(common, "_chosen", {})
    first = kernels.conv2d_fwd(x, wt)[0]
    assert [key[0] for key in common._chosen] == [kernels.conv.conv_fwd_kernel]

    def not_again(self, *args, **kwargs):
        raise AssertionError("the autotuner was asked again for a key it had answered")

    with monkeypatch.context() as patch:
        patch.setattr(autotuner.Autotuner, "run", not_again)
        assert torch.equal(kernels.conv2d_fwd(x, wt)[0], first)
        with pytest.raises(AssertionError, match="asked again"):
            kernels.conv2d_fwd(x, wt, stats=True)  # another key

    calls = []
    monkeypatch.setattr(common, "_chosen", {})
    monkeypatch.setattr(autotuner.Autotuner, "run", lambda self, *args, **kwargs: calls.append(1))
    for _ in range(2):
        kernels.conv2d_dgrad(rnd((2, 4, 6, 7), torch.float32), wt)
    assert len(calls) == 2 and not common._chosen
