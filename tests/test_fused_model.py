"""``StackedHourglass(fused=True)`` vs ``fused=False`` sharing one state_dict (Triton forced onto CPU tensors).

Two stacks, depth 1, 8 features, 3 joints, batch 2 at 16x16 (the stem's fixed 64/128-channel residuals included).
Both models are float64-free fp32; three SGD steps with momentum; after each: outputs, loss, every gradient, and
at the end every buffer (running statistics, num_batches_tracked) and parameter. Tolerance 1e-4 relative to each
tensor's largest magnitude (fp32, different reduction orders, compounded over three steps of training-mode BN);
gradients as in ``test_fused_residual.compare_grads``. The head (post-activation ``lin`` BN) on its own: 2e-5.
"""
import copy
import warnings

import pytest
import torch

import hgfast.fused as fused_mod
from hgfast import StackedHourglass
from hgfast.fused import count_stats_passes, force_triton_on_cpu
from hgfast.models import Merge, StackHead

from test_fused_residual import compare_buffers, compare_grads, fused_copy, randomize, rel_err  # skips sans triton

from hgfast.kernels.common import interpreter_tiles  # noqa: E402 (after the skip)

TOL = 1e-4


@pytest.fixture(autouse=True)
def wide_tiles():
    """64-wide GEMM tiles here (the kernel tests cover 16-wide ones, several per shape): the interpreter's time is
    per program, and the stem's 128-channel convs then take a 16th of them."""
    with interpreter_tiles(64):
        yield


def test_fused_false_on_cpu_reports_inactive_and_warns_once():
    model = StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1, fused=True)
    assert model.fused and not model.fused_active
    x = torch.randn(2, 3, 16, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(x)
        model(x)
    assert sum("fused_active is False" in str(w.message) for w in caught) == 1


def test_a_broken_kernels_install_says_why_the_fused_path_is_off(monkeypatch):
    import sys

    from hgfast.info import report

    for name, unchecked in (("_triton_ok", None), ("_triton_error", "")):  # both restored afterwards
        monkeypatch.setattr(fused_mod, name, unchecked)
    monkeypatch.setitem(sys.modules, "hgfast.kernels", None)  # its import then fails
    reason = "ModuleNotFoundError: import of hgfast.kernels halted"
    assert not fused_mod.triton_available() and fused_mod.triton_error().startswith(reason)
    model = StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1, fused=True)
    with pytest.warns(UserWarning, match=f"hgfast.kernels does not import: {reason}.*fused_active is False"):
        model(torch.randn(1, 3, 16, 16))
    assert f"fused model (Triton kernels): unavailable (hgfast.kernels does not import: {reason}" in \
        "\n".join(report())


def test_fused_default_switches(monkeypatch):
    monkeypatch.setenv("HGFAST_FUSED", "1")
    assert StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1).fused
    monkeypatch.setenv("HGFAST_FUSED", "0")
    assert not StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1).fused
    fused_mod.set_default_fused(True)
    try:
        assert StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1).fused
    finally:
        fused_mod.set_default_fused(None)
    with pytest.raises(TypeError, match="fused must be a bool"):
        StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1, fused="yes")


@pytest.mark.triton
def test_sync_batch_norm_model_trains_on_the_reference_path_and_says_so_once(monkeypatch):
    """``sync_bn=true``: with SyncBatchNorm the training forward runs the reference path (whose SyncBatchNorm
    reduces statistics across processes; without a process group it is a plain batch norm): no fused statistics
    pass, the reference's output; warned once (``fused_active`` only says the device could run the kernels)."""
    pytest.importorskip("triton")
    monkeypatch.setattr(fused_mod, "_sync_bn_warned", False)
    ref = randomize(StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1, fused=False))
    fused = StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1, fused=True)
    fused.load_state_dict(ref.state_dict())
    fused = torch.nn.SyncBatchNorm.convert_sync_batchnorm(fused)
    x = torch.randn(2, 3, 16, 16)
    with force_triton_on_cpu(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with count_stats_passes() as passes:
                out = fused(x)
            assert passes["batch_stats"] == 0 and rel_err(out, ref(x)) <= 1e-6
    assert sum("SyncBatchNorm run the reference path" in str(w.message) for w in caught) == 1
    compare_buffers(ref, fused, 1e-6)


@pytest.mark.triton
def test_a_submodule_in_the_other_mode_sends_the_model_to_the_reference_path():
    """``model.train(); model.heads[0].training = False`` (its BatchNorms still training): each module runs in its
    own mode, as in the reference: the head's BN uses and updates batch statistics, and every gradient flows (the
    fused forward takes one mode for the whole model and would run the head's inference kernels)."""
    pytest.importorskip("triton")
    ref = randomize(StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1, fused=False))
    fused = StackedHourglass(nstack=1, nfeat=8, njoints=2, depth=1, fused=True)
    fused.load_state_dict(ref.state_dict())
    for model in (ref, fused):
        model.heads[0].training = False
    x = torch.randn(2, 3, 16, 16)
    with force_triton_on_cpu():
        out = fused(x)
    expected = ref(x)
    assert rel_err(out, expected) <= 1e-5
    out.square().sum().backward()
    expected.square().sum().backward()
    compare_grads(ref, fused, 1e-4, zero_grad_bias=lambda n: not n.endswith("heatmap.bias"))
    compare_buffers(ref, fused, 1e-5)


@pytest.mark.triton
def test_stacked_hourglass_fused_matches_reference_over_three_steps():
    pytest.importorskip("triton")
    ref = randomize(StackedHourglass(nstack=2, nfeat=8, njoints=3, depth=1, fused=False))
    fused = StackedHourglass(nstack=2, nfeat=8, njoints=3, depth=1, fused=True)
    fused.load_state_dict(ref.state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (ref, fused)]
    with force_triton_on_cpu():
        assert fused.fused_active
        for step in range(3):
            x = torch.randn(2, 3, 16, 16)
            target = torch.randn(2, 2, 3, 4, 4)
            losses = []
            for model, opt in zip((ref, fused), opts):
                opt.zero_grad()
                with count_stats_passes() as passes:
                    out = model(x)
                assert out.is_contiguous()  # as the reference's, though the fused maps are channels_last
                loss = torch.nn.functional.mse_loss(out, target)
                loss.backward()
                losses.append(loss)
            # Standalone statistics passes left (were 13 + 3): the residual after the stem BN, and the stem BN;
            # every other residual's BN1 and the heads' lin BN take epilogue or max-pool statistics. No BN-ReLU
            # pass: the heatmap and merge convs apply the heads' BN-ReLU as they load lin.
            assert dict(passes) == {"batch_stats": 1, "batch_norm": 1}
            assert rel_err(losses[1].detach(), losses[0].detach()) <= TOL, f"loss at step {step}"
            # Every bias but the heatmap convs' reaches the loss only through a training-mode BN (each stack's
            # output passes its head's lin BN; maxpool, upsample, 1x1 convs and skips carry a per-channel constant).
            compare_grads(ref, fused, TOL,
                          zero_grad_bias=lambda n: not (n.startswith("heads.") and n.endswith(".heatmap.bias")))
            for opt in opts:
                opt.step()
        ref.eval(), fused.eval()
        with torch.no_grad():
            assert rel_err(fused(x), ref(x)) <= TOL, "eval-mode outputs"
    state = ref.state_dict()
    for name, value in fused.state_dict().items():
        if name.endswith("num_batches_tracked"):
            assert int(value) == int(state[name]) == 3, name
        else:
            assert rel_err(value, state[name]) <= TOL, f"{name}: {rel_err(value, state[name]):.3g}"


@pytest.mark.triton
def test_fused_model_on_a_non_square_input():
    """Maps of H != W through the whole model (an 8x16 input: 2x4 heatmaps, 1x2 at the hourglass bottom), in
    training and eval mode (the kernels' own tests cover non-square maps and their gradients)."""
    pytest.importorskip("triton")
    ref = randomize(StackedHourglass(nstack=1, nfeat=8, njoints=3, depth=1, fused=False))
    fused = StackedHourglass(nstack=1, nfeat=8, njoints=3, depth=1, fused=True)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 8, 16)
    with force_triton_on_cpu(), torch.no_grad():
        assert fused.fused_active
        want = ref(x)
        assert want.shape == (2, 1, 3, 2, 4) and rel_err(fused(x), want) <= TOL, "training-mode outputs"
        ref.eval(), fused.eval()
        assert rel_err(fused(x), ref(x)) <= TOL, "eval-mode outputs"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, None)], ids=["fp32", "bf16"])
def test_fused_model_on_a_non_square_input_on_the_gpu(dtype, tol, monkeypatch):
    """Two stacks at 64x128 (16x32 heatmaps, 1x2 at the hourglass bottom) on CUDA, channels_last, autocast in
    ``dtype``: training outputs and (fp32) every gradient, then eval outputs, match the reference (no TF32)."""
    pytest.importorskip("triton")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    ref = randomize(StackedHourglass(nstack=2, nfeat=32, njoints=5)).cuda().to(memory_format=torch.channels_last)
    fused = StackedHourglass(nstack=2, nfeat=32, njoints=5, fused=True).cuda().to(memory_format=torch.channels_last)
    fused.load_state_dict(ref.state_dict())
    assert fused.fused_active
    x = torch.randn(2, 3, 64, 128, device="cuda").contiguous(memory_format=torch.channels_last)
    autocast = dict(device_type="cuda", dtype=dtype, enabled=dtype != torch.float32)
    outs = []
    for model in (ref, fused):
        with torch.autocast(**autocast):
            out = model(x).float()
        (out * torch.linspace(-1, 1, out.numel(), device="cuda").view_as(out)).sum().backward()
        outs.append(out.detach())
    assert outs[0].shape == (2, 2, 5, 16, 32)
    exact = copy.deepcopy(ref).double() if dtype != torch.float32 else None

    def close(got, want, what):
        """fp32: within tol of the reference; 16-bit: two paths rounded apart (the eager one alone is 3-5e-2 from
        float64 here, BN over 4 values at the bottom), so each against float64, the fused at most twice as far."""
        if exact is None:
            assert rel_err(got, want) <= tol, what
        else:
            with torch.no_grad():
                truth = exact(x.double()).float()
            assert rel_err(got, truth) <= max(2 * rel_err(want, truth), 1e-2), what

    close(outs[1], outs[0], "training-mode outputs")
    if dtype == torch.float32:
        compare_grads(ref, fused, tol, zero_grad_bias=lambda n: not (n.startswith("heads.")
                                                                     and n.endswith(".heatmap.bias")))
    ref.eval(), fused.eval()
    if exact is not None:
        exact.load_state_dict(ref.state_dict())  # the running statistics of the training forward above
        exact.eval()
    with torch.no_grad(), torch.autocast(**autocast):
        got, want = fused(x).float(), ref(x).float()
    close(got, want, "eval-mode outputs")


@pytest.mark.triton
@pytest.mark.parametrize("cumulative", [False, True], ids=["momentum", "one-bn-cumulative"])
def test_running_statistics_are_updated_together_after_the_forward(cumulative):
    """The fused training forward applies every BN's running-statistics update at its end, in two
    ``_foreach_lerp_`` calls for the whole model (were two per residual), with the reference's values. One BN with
    ``momentum=None`` sends all of them through the per-BN path (it reads ``num_batches_tracked``)."""
    pytest.importorskip("triton")
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountLerps(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            CountLerps.calls += func.__name__.startswith("_foreach_lerp_")
            return func(*args, **(kwargs or {}))

    ref = randomize(StackedHourglass(nstack=1, nfeat=8, njoints=3, depth=1, fused=False))
    fused = StackedHourglass(nstack=1, nfeat=8, njoints=3, depth=1, fused=True)
    fused.load_state_dict(ref.state_dict())
    if cumulative:
        for model in (ref, fused):
            model.hourglasses[0].low2.bn2.momentum = None
    x = torch.randn(2, 3, 16, 16)
    with force_triton_on_cpu(), torch.no_grad():
        ref(x)
        with CountLerps():
            fused(x)
    assert CountLerps.calls == (0 if cumulative else 2)
    compare_buffers(ref, fused, TOL)


@pytest.mark.triton
def test_head_feeds_the_merge_without_writing_its_feature():
    """The model's training path: the head (``_head`` without ``materialize``) hands the merge its pre-BN ``lin``
    and BN-ReLU, which the merge's feature conv applies as it loads it (``_merge(prologue=)``); no BN-ReLU pass.
    Outputs and every gradient (of y, x, the head's and the merge's parameters) as the reference head + merge."""
    pytest.importorskip("triton")
    from hgfast.fused import modules

    ref_head, ref_merge = randomize(StackHead(6, 3)), randomize(Merge(6, 3), seed=2)
    head, merge = fused_copy(ref_head), fused_copy(ref_merge)
    y, x = torch.randn(2, 6, 4, 4), torch.randn(2, 6, 4, 4)
    g, gh = torch.randn(2, 6, 4, 4), torch.randn(2, 3, 4, 4)
    with force_triton_on_cpu():
        yr, xr, yf, xf = (t.clone().requires_grad_() for t in (y, x, y, x))
        feature, hr = ref_head(yr)
        out_r = ref_merge(xr, feature, hr)
        with count_stats_passes() as passes:
            lin, hf, prologue = modules._head(head, yf)
            out_f = modules._merge(merge, xf, lin, hf, prologue=prologue)[0]
        assert passes["bn_relu"] == 0 and prologue is not None
        assert rel_err(hf, hr) <= 2e-5 and rel_err(out_f, out_r) <= 2e-5
        for out, h in ((out_r, hr), (out_f, hf)):
            ((out * g).sum() + (h * gh).sum()).backward()
    assert rel_err(yf.grad, yr.grad) <= 2e-5 and rel_err(xf.grad, xr.grad) <= 2e-5
    compare_grads(ref_head, head, 2e-5, zero_grad_bias=lambda name: name != "heatmap.bias")
    compare_grads(ref_merge, merge, 2e-5, zero_grad_bias=lambda name: False)


@pytest.mark.triton
@pytest.mark.parametrize("momentum,feature_grad", [(0.1, True), (None, False)])
def test_stack_head_train_lin_bn(momentum, feature_grad):
    """StackHead in training: the lin BN's statistics from the lin GEMM epilogue, BN-ReLU in one pass; outputs,
    gradients (through feature and heatmaps, or heatmaps alone) and lin BN running statistics over two steps."""
    pytest.importorskip("triton")
    ref = randomize(StackHead(6, 3))
    ref.lin_bn.momentum = momentum
    fused = fused_copy(ref)
    with force_triton_on_cpu():
        for _ in range(2):
            y = torch.randn(2, 6, 4, 4)
            gf, gh = torch.randn(2, 6, 4, 4), torch.randn(2, 3, 4, 4)
            yr, yf = y.clone().requires_grad_(), y.clone().requires_grad_()
            fr, hr = ref(yr)
            with count_stats_passes() as passes:
                ff, hf = fused(yf)
            assert passes["bn_relu"] == 1  # a standalone head writes its feature out (the model's heads do not)
            assert rel_err(ff, fr) <= 2e-5 and rel_err(hf, hr) <= 2e-5
            for model, f, h in ((ref, fr, hr), (fused, ff, hf)):
                model.zero_grad()
                loss = (h * gh).sum()
                (loss + (f * gf).sum() if feature_grad else loss).backward()
            assert rel_err(yf.grad, yr.grad) <= 2e-5
            # The head's residual and lin_conv biases reach the loss only through the lin BN.
            compare_grads(ref, fused, 2e-5, zero_grad_bias=lambda name: name != "heatmap.bias")
        compare_buffers(ref, fused, 2e-5)
        assert int(fused.lin_bn.num_batches_tracked) == 2
        ref.eval(), fused.eval()
        with torch.no_grad():
            (fr, hr), (ff, hf) = ref(y), fused(y)
        assert rel_err(ff, fr) <= 2e-5 and rel_err(hf, hr) <= 2e-5
