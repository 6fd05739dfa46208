"""Fused residual and hourglass (Triton path forced onto CPU tensors under the interpreter) vs the reference.

Same parameters and inputs in both; the reference runs in float64 (bf16 case) or float32 (fp32 case).
Tolerances relative to the largest reference magnitude of each tensor: fp32 2e-5 (fp32 accumulation, different
summation order); bf16 6e-2 forward / 1e-1 gradients (activations and operands rounded to 8-bit mantissas at
every kernel boundary, as in any bf16 network; the reference rounds only the input and parameters); fp16
1e-2 / 2e-2 (11-bit mantissas).
"""
import copy

import pytest
import torch

from hgfast.fused import count_stats_passes, force_triton_on_cpu
from hgfast.models import Hourglass, Residual

pytestmark = pytest.mark.triton
pytest.importorskip("triton")  # only a missing triton skips; a broken hgfast.kernels fails
import hgfast.kernels  # noqa: E402,F401

from hgfast.fused import modules, ops  # noqa: E402  (imports triton)


@pytest.fixture
def triton_cpu():
    with force_triton_on_cpu():
        yield


def randomize(module, seed=1):
    """Random parameters and BN running statistics (not the defaults, which hide bugs); drawn on CPU from a seeded
    generator and copied to the module's device."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g, device="cpu") * 0.5
                    + (1.0 if name.endswith("bn1.weight") else 0.0))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g, device="cpu") * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g, device="cpu") + 0.5)
    return module


def fused_copy(module):
    fused = copy.deepcopy(module)
    for m in fused.modules():
        if hasattr(m, "fused"):
            m.fused = True
    return fused


def rel_err(actual, ref):
    return (actual.double() - ref.double()).abs().max().item() / max(ref.double().abs().max().item(), 1e-12)


def feeds_batch_stat_bn(name):
    """Biases feeding a training-mode BN directly: conv1 and conv2 of a residual, the head's ``lin_conv``."""
    return name.endswith(("conv1.bias", "conv2.bias", "lin_conv.bias"))


def compare_grads(ref, fused, tol, zero_grad_bias=feeds_batch_stat_bn):
    """Every parameter gradient within ``tol`` of the reference, relative to its own scale; for the biases with
    ``zero_grad_bias(name)`` relative to the larger of its own and its sibling weight's (a conv bias reaching the
    loss only through training-mode BNs has a true gradient of exactly 0, so only rounding noise remains there)."""
    grads = {name: p.grad for name, p in ref.named_parameters()}
    for name, p in fused.named_parameters():
        r = grads[name]
        scale = max(r.abs().max().item(), 1e-12)
        if name.endswith("bias") and zero_grad_bias(name):
            scale = max(scale, grads[name[: -len("bias")] + "weight"].abs().max().item())
        err = (p.grad.double() - r.double()).abs().max().item()
        assert err <= tol * scale, f"grad of {name}: error {err:.3g} > {tol} * {scale:.3g}"


def compare_buffers(ref, fused, tol):
    bufs = dict(ref.named_buffers())
    for name, b in fused.named_buffers():
        if name.endswith("num_batches_tracked"):
            assert int(b) == int(bufs[name]), name
        else:
            assert rel_err(b, bufs[name]) <= tol, f"{name}: rel err {rel_err(b, bufs[name]):.3g}"


def check_train_step(ref, fused, x, g, tol):
    """One training forward + backward of ``ref`` and ``fused`` on ``x`` with output gradient ``g``: outputs, input
    and parameter gradients, and running statistics agree within ``tol``."""
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yf = ref(xr), fused(xf)
    assert rel_err(yf, yr) <= tol
    yr.backward(g)
    yf.backward(g)
    assert rel_err(xf.grad, xr.grad) <= tol
    compare_grads(ref, fused, tol)
    compare_buffers(ref, fused, tol)


@pytest.mark.parametrize("cin,cout,shape", [(6, 6, (1, 6, 10)), (5, 8, (2, 3, 5))])
def test_residual_train_fp32(triton_cpu, cin, cout, shape):
    ref = randomize(Residual(cin, cout))
    fused = fused_copy(ref)
    x = torch.randn(shape[0], cin, *shape[1:])
    g = torch.randn(shape[0], cout, *shape[1:])
    check_train_step(ref, fused, x, g, 2e-5)


def test_residual_train_momentum_none_cumulative(triton_cpu):
    ref = randomize(Residual(6, 6))
    for bn in (ref.bn1, ref.bn2, ref.bn3):
        bn.momentum = None
    fused = fused_copy(ref)
    for _ in range(2):
        x = torch.randn(1, 6, 4, 6)
        ref(x)
        fused(x)
    compare_buffers(ref, fused, 2e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, (6e-2, 1e-1)), (torch.float16, (1e-2, 2e-2))])
def test_residual_train_half(triton_cpu, dtype, tol):
    ref = randomize(Residual(6, 6)).double()
    fused = fused_copy(ref).float()  # fp32 parameters, half activations: weights are cast per GEMM
    x = torch.randn(1, 6, 6, 10).to(dtype)
    g = torch.randn(1, 6, 6, 10).to(dtype)
    xr, xf = x.double().requires_grad_(), x.clone().requires_grad_()
    yr, yf = ref(xr), fused(xf)
    assert yf.dtype == dtype
    assert rel_err(yf, yr) <= tol[0]
    yr.backward(g.double())
    yf.backward(g)
    assert xf.grad.dtype == dtype
    assert rel_err(xf.grad, xr.grad) <= tol[1]
    compare_grads(ref, fused, tol[1])


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float16, 1e-2), (torch.bfloat16, 6e-2)])
@pytest.mark.parametrize("cin,cout,variant", [(5, 8, "auto"), (8, 8, "single"), (8, 8, "single-64"),
                                               (8, 8, "three")])
def test_residual_eval_folded(triton_cpu, monkeypatch, dtype, tol, cin, cout, variant):
    """Skip conv: three kernels (+ the skip conv); identity skip: one kernel or three (``HGFAST_EVAL_RESIDUAL``)."""
    monkeypatch.setenv("HGFAST_EVAL_RESIDUAL", variant)
    ref = randomize(Residual(cin, cout)).double().eval()
    fused = fused_copy(ref).float().eval()
    x = torch.randn(1, cin, 6, 10).to(dtype)
    with torch.no_grad():
        yr, yf = ref(x.double()), fused(x)
    assert yf.dtype == dtype
    assert rel_err(yf, yr) <= tol


@pytest.mark.parametrize("training", [True, False])
def test_residual_under_autocast_runs_in_the_autocast_dtype(triton_cpu, training):
    """fp32 input under ``torch.autocast(bfloat16)``: the fused kernels run in bf16, as eager convolutions do (not
    in fp32, at twice the bytes), and the input gradient comes back in fp32."""
    ref = randomize(Residual(6, 6)).double().train(training)
    fused = fused_copy(ref).float().train(training)
    x = torch.randn(2, 6, 4, 6, requires_grad=training)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.set_grad_enabled(training):
        yf = fused(x)
    assert yf.dtype == torch.bfloat16
    assert rel_err(yf, ref(x.detach().double())) <= 6e-2
    if training:
        yf.float().sum().backward()
        assert x.grad.dtype == torch.float32 and fused.conv2.weight.grad.dtype == torch.float32


def test_residual_eval_with_grad_uses_reference(triton_cpu):
    """Eval mode with gradients needed falls back to the reference ops (the folded kernels have no backward)."""
    ref = randomize(Residual(6, 6)).eval()
    fused = fused_copy(ref).eval()
    x = torch.randn(1, 6, 4, 4, requires_grad=True)
    fused(x).sum().backward()
    assert fused.conv1.weight.grad is not None


def test_residual_train_rejects_single_value_per_channel(triton_cpu):
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        fused_copy(Residual(4, 4))(torch.randn(1, 4, 1, 1))


@pytest.mark.parametrize("training,variant", [(True, "auto"), (False, "single"), (False, "three")])
def test_hourglass_fp32(triton_cpu, monkeypatch, training, variant):
    """Depth 2 at 8x8 (the innermost residual sees 2x2 pixels): float64 reference, fp32 tolerance 5e-5 (batch
    statistics over 8 values per channel amplify fp32 rounding in the BN backward). Eval: both implementations of
    the inference residual, the hourglass merge in their epilogues."""
    monkeypatch.setenv("HGFAST_EVAL_RESIDUAL", variant)
    ref = randomize(Hourglass(2, 6)).double().train(training)
    fused = fused_copy(ref).float().train(training)
    x = torch.randn(2, 6, 8, 8)
    if not training:
        with torch.no_grad():
            assert rel_err(fused(x), ref(x.double())) <= 2e-5
        return
    g = torch.randn(2, 6, 8, 8)
    xr, xf = x.double().requires_grad_(), x.clone().requires_grad_()
    yr, yf = ref(xr), fused(xf)
    assert rel_err(yf, yr) <= 5e-5
    yr.backward(g.double())
    yf.backward(g)
    assert rel_err(xf.grad, xr.grad) <= 5e-5
    compare_grads(ref, fused, 5e-5)
    compare_buffers(ref, fused, 5e-5)


def test_residual_consumes_handed_over_stats(triton_cpu):
    """Residual(5, 6) -> Residual(6, 6): the consumer's BN1 finalising the producer's epilogue statistics gives the
    reference's outputs, gradients and running statistics, and those of the standalone-pass path, with one stats
    pass fewer."""
    ref = randomize(torch.nn.Sequential(Residual(5, 6), Residual(6, 6)))
    standalone, handoff = fused_copy(ref), fused_copy(ref)
    x, g = torch.randn(2, 5, 4, 6), torch.randn(2, 6, 4, 6)
    xr, xs, xh = (x.clone().requires_grad_() for _ in range(3))
    yr = ref(xr)
    with count_stats_passes() as passes_standalone:
        ys = standalone(xs)
    with count_stats_passes() as passes_handoff:
        mid, partial = modules._residual(handoff[0], xh, out_stats=True)
        yh, no_partial = modules._residual(handoff[1], mid, x_partial=partial)
    assert no_partial is None
    assert passes_standalone["batch_stats"] == 2 and passes_handoff["batch_stats"] == 1
    one = torch.ones(6)
    handed = ops.bn_train_coeffs(partial, one, one, 1e-5)
    recomputed = ops.bn_train_coeffs(ops.channel_stats(modules.nhwc(mid.detach())), one, one, 1e-5)
    torch.testing.assert_close(handed, recomputed, rtol=1e-5, atol=1e-6)  # statistics of the stored output
    assert rel_err(yh, ys) <= 2e-6
    for y in (yr, ys, yh):
        y.backward(g)
    for fused, y, xf in ((standalone, ys, xs), (handoff, yh, xh)):
        assert rel_err(y, yr) <= 2e-5
        assert rel_err(xf.grad, xr.grad) <= 2e-5
        compare_grads(ref, fused, 2e-5)
        compare_buffers(ref, fused, 2e-5)


@pytest.mark.parametrize("frozen", ["bn2", "all", "module"])
def test_residual_mixed_train_eval_modes_use_reference(triton_cpu, frozen):
    """``res.train(); bn.eval()`` (frozen BN fine-tuning): the eval BNs use and keep their running statistics, as
    ``nn.BatchNorm2d`` does; the fused forward (mode taken from the module) would use batch statistics.
    ``res.training = False`` with training BNs: batch statistics, not the fused inference kernel's running ones
    (a guard: the model-level case, a head set to eval inside a training model, is in test_fused_model)."""
    ref = randomize(Residual(6, 6)).train()
    if frozen == "module":
        ref.training = False
    for bn in {"bn2": (ref.bn2,), "all": (ref.bn1, ref.bn2, ref.bn3), "module": ()}[frozen]:
        bn.eval()
    fused = fused_copy(ref)
    x = torch.randn(2, 6, 4, 6)
    with torch.no_grad():
        assert rel_err(fused(x), ref(x)) <= 2e-5
    compare_buffers(ref, fused, 2e-5)
    assert int(fused.bn2.num_batches_tracked) == (frozen == "module")


@pytest.mark.parametrize("training", [True, False])
def test_residual_float64_uses_reference(triton_cpu, training):
    """The kernels take fp32/fp16/bf16 only: a float64 model with fused=True runs the reference ops."""
    ref = randomize(Residual(5, 6)).double().train(training)
    fused = fused_copy(ref)
    x = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(fused(x), ref(x)) <= 1e-12


@pytest.mark.parametrize("cin,cout", [(6, 6), (5, 8)])
def test_residual_train_without_conv_biases(triton_cpu, cin, cout):
    """Convs built with bias=False (skip conv included): no bias gradients, the rest as the reference."""
    ref = randomize(Residual(cin, cout))
    for conv in (ref.conv1, ref.conv2, ref.conv3, ref.skip):
        if conv is not None:
            conv.bias = None
    fused = fused_copy(ref)
    x, g = torch.randn(2, cin, 4, 6), torch.randn(2, cout, 4, 6)
    check_train_step(ref, fused, x, g, 2e-5)


def test_residual_sync_batch_norm_uses_reference_in_training_only(triton_cpu, monkeypatch):
    """``sync_bn``: SyncBatchNorm's statistics span processes, so in training the module runs the reference path
    (where SyncBatchNorm does that; without a process group, as here, it falls back to a plain batch norm). In eval
    mode it is a plain BatchNorm and the fused path runs."""
    monkeypatch.setattr("hgfast.fused._sync_bn_warned", True)  # the warning is tested with the model
    calls = []
    fused_forward = modules.residual_forward
    monkeypatch.setattr(modules, "residual_forward", lambda *args: calls.append(1) or fused_forward(*args))
    ref = randomize(Residual(6, 6))
    fused = torch.nn.SyncBatchNorm.convert_sync_batchnorm(fused_copy(ref))
    x = torch.randn(2, 6, 4, 4)
    assert rel_err(fused(x), ref(x)) <= 1e-6 and not calls
    compare_buffers(ref, fused, 1e-6)
    ref.eval(), fused.eval()
    with torch.no_grad():
        assert rel_err(fused(x), ref(x)) <= 2e-5 and len(calls) == 1
