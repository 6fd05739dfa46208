"""Fused forwards of the model's modules; each module calls its function here from one line of its ``forward``.

Modules hand NCHW tensors around (channels_last in the fused path, so the NHWC views below are free).
Training mode uses batch statistics and updates ``running_mean``/``running_var``/``num_batches_tracked`` like
``nn.BatchNorm2d``; eval mode applies BN1 as the first GEMM's prologue and folds BN2/BN3 into the epilogues of
conv1/conv2: three kernels per residual, or, with an identity skip, one (``kernels.residual_eval``) where the GPU
times it faster (``hgfast.fused.fastest``). Eval mode is inference only: with gradients needed it is not used.

Statistics handoff (training): the private ``_residual``/``_hourglass``/``_merge`` return ``(out, partial)``, the
partial BN statistics of ``out`` written by the epilogue of the GEMM that stored it, and take their input's partial
statistics, so a residual's BN1 needs no pass of its own over its input. Only the input that no fused kernel produced
(after the stem's BN-ReLU) gets a standalone stats pass; each max-pool writes its output's.
"""
from __future__ import annotations

import contextlib
import threading

import torch
from torch import Tensor, nn

from ..models.hourglass import Hourglass
from ..kernels.conv import pack_weight
from .functions import ConvFn, HeadTrainFn, MaxPoolFn, ResidualTrainFn, _f32
from .memo import memo
from .ops import direct as _ops


def nhwc(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)


def nchw(y: Tensor) -> Tensor:
    return y.permute(0, 3, 1, 2)


def under_autocast(*tensors: Tensor) -> tuple[Tensor, ...]:
    """The inputs of a fused module's forward, cast to the autocast dtype when ``torch.autocast`` is on for their
    device: the fused kernels then run in bf16/fp16 as eager convolutions do. (Eager adds an identity skip in its
    input's dtype, so there a standalone module fed fp32 returns fp32; the fused one returns the autocast dtype.)"""
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) for t in tensors)


def check_bn(bn: nn.BatchNorm2d, where: str) -> None:
    if not (bn.affine and bn.track_running_stats):
        raise ValueError(f"fused {where}: BatchNorm2d needs affine=True and track_running_stats=True")


_deferred = threading.local()  # .pending: the updates collected inside ``deferred_running_stats``, else None


@contextlib.contextmanager
def deferred_running_stats():
    """Inside, ``update_running_stats`` collects its updates, and they are applied together on exit (also after an
    error, for the BNs that ran): a few multi-tensor launches per model forward instead of four per residual. The
    result is the same: a training-mode BN reads only its batch statistics, never another BN's running ones. Nested
    uses join the outermost."""
    if getattr(_deferred, "pending", None) is not None:
        yield
        return
    _deferred.pending = pending = []
    try:
        yield
    finally:
        _deferred.pending = None
        if pending:
            _apply_running_stats(pending)


def update_running_stats(bns, means, variances, count: int) -> None:
    """``nn.BatchNorm2d``'s training update of each BN in ``bns`` from its batch ``mean`` and biased ``var`` over
    ``count`` values: momentum (or cumulative average for None), unbiased variance. Applied at once, or collected
    inside ``deferred_running_stats``."""
    updates = [(bn, mean, var, count) for bn, mean, var in zip(bns, means, variances)]
    pending = getattr(_deferred, "pending", None)
    if pending is None:
        _apply_running_stats(updates)
    else:
        pending.extend(updates)


def _apply_running_stats(updates) -> None:
    """Apply ``(bn, mean, biased var, count)`` updates; BNs with one momentum and fp32 buffers (the usual case) are
    updated together in four multi-tensor launches."""
    bns = [u[0] for u in updates]
    with torch.no_grad():
        torch._foreach_add_([bn.num_batches_tracked for bn in bns], 1)
        unbiased = torch._foreach_mul([u[2] for u in updates], [count / (count - 1) for *_, count in updates])
        momentum = bns[0].momentum
        if momentum is not None and all(bn.momentum == momentum and bn.running_mean.dtype == torch.float32
                                        and bn.running_var.dtype == torch.float32 for bn in bns):
            torch._foreach_lerp_([bn.running_mean for bn in bns], [u[1] for u in updates], momentum)
            torch._foreach_lerp_([bn.running_var for bn in bns], unbiased, momentum)
            return
        for (bn, mean, *_), var in zip(updates, unbiased):
            f = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.mul_(1 - f).add_(mean.to(bn.running_mean.dtype), alpha=f)
            bn.running_var.mul_(1 - f).add_(var.to(bn.running_var.dtype), alpha=f)


def tensors_of(module: nn.Module, *names: str) -> tuple[Tensor | None, ...]:
    """``getattr(module, name)`` for each parameter or buffer name, read from the module's dicts where it is there
    (~10x faster than ``nn.Module.__getattr__``; these lookups run for every fused inference residual)."""
    params, buffers = module._parameters, module._buffers
    return tuple(params[n] if n in params else buffers[n] if n in buffers else getattr(module, n) for n in names)


def bn_sources(bn: nn.BatchNorm2d) -> tuple[Tensor, ...]:
    return tensors_of(bn, "weight", "bias", "running_mean", "running_var")


def scale_shift(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BN as ``x * s + t`` (fp32 ``s``, ``t``) from the running statistics."""
    s = _f32(bn.weight) * torch.rsqrt(bn.running_var.float() + bn.eps)
    return s, _f32(bn.bias) - bn.running_mean.float() * s


def eval_scale_shift(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """``scale_shift(bn)``, memoised."""
    return memo(bn, ("scale_shift", bn.eps), bn_sources(bn), lambda: scale_shift(bn))


def eval_residual_args(res, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """What ``residual_eval`` takes from ``res``'s parameters and statistics, besides the 1x1 weights, for
    activations of ``dtype``: ``(b1, s1, t1, s2, t2, w2_packed, b2, s3, t3, b3)`` (memoised: one lookup per call)."""
    sub = res._modules
    bns, convs = (sub["bn1"], sub["bn2"], sub["bn3"]), (sub["conv1"], sub["conv2"], sub["conv3"])
    (w2,) = tensors_of(convs[1], "weight")
    biases = [tensors_of(conv, "bias")[0] for conv in convs]

    def compute():
        (s1, t1), (s2, t2), (s3, t3) = (scale_shift(bn) for bn in bns)
        b1, b2, b3 = (_f32(b) for b in biases)
        return b1, s1, t1, s2, t2, pack_weight(w2, dtype), b2, s3, t3, b3

    sources = (*bn_sources(bns[0]), *bn_sources(bns[1]), *bn_sources(bns[2]), w2,
               *(b for b in biases if b is not None))
    return memo(res, ("eval", dtype, *(bn.eps for bn in bns)), sources, compute)


def residual_forward(res, x: Tensor, low: Tensor | None = None) -> Tensor:
    """``res(x) [+ nearest_2x(low)]`` for a ``Residual``; the upsample-add runs in the last GEMM's epilogue."""
    x, *low = under_autocast(x, *([] if low is None else [low]))
    return _residual(res, x, *low)[0]


def _residual(res, x: Tensor, low: Tensor | None = None, x_partial: Tensor | None = None,
              out_stats: bool = False) -> tuple[Tensor, Tensor | None]:
    """``residual_forward`` taking ``x``'s partial statistics (training; ``None``: a standalone pass) and, in
    training with ``out_stats``, also returning the output's (else ``None``)."""
    xn, lown = nhwc(x), None if low is None else nhwc(low)
    bns = (res.bn1, res.bn2, res.bn3)
    for bn in bns:
        check_bn(bn, "Residual")
    skip_w = None if res.skip is None else res.skip.weight
    skip_b = None if res.skip is None else res.skip.bias
    if res.training:
        count = xn.numel() // xn.shape[3]
        if count < 2:
            raise ValueError(f"fused Residual: training BatchNorm needs more than 1 value per channel, got input "
                             f"shape {tuple(x.shape)}")
        y, y_partial, *stats = ResidualTrainFn.apply(
            xn, lown, x_partial, out_stats, tuple(bn.eps for bn in bns),
            res.bn1.weight, res.bn1.bias, res.conv1.weight, res.conv1.bias,
            res.bn2.weight, res.bn2.bias, res.conv2.weight, res.conv2.bias,
            res.bn3.weight, res.bn3.bias, res.conv3.weight, res.conv3.bias, skip_w, skip_b)
        update_running_stats(bns, stats[0::2], stats[1::2], count)
        return nchw(y), y_partial if out_stats else None
    b1, s1, t1, s2, t2, w2p, b2, s3, t3, b3 = eval_residual_args(res, xn.dtype)
    skip = None if skip_w is None else \
        _ops.conv_fwd(xn, skip_w.detach(), _f32(skip_b), None, None, None, None, None, None, False)[0]
    y = _ops.residual_eval(xn, res.conv1.weight.detach(), b1, s1, t1, s2, t2, res.conv2.weight.detach(), w2p, b2,
                           s3, t3, res.conv3.weight.detach(), b3, lown, skip)
    return nchw(y), None


def hourglass_forward(hg, x: Tensor) -> Tensor:
    """``up1(x) + nearest_2x(low3)`` with the merge in the epilogue of ``up1``'s last GEMM."""
    return _hourglass(hg, *under_autocast(x))[0]


def _hourglass(hg, x: Tensor, x_partial: Tensor | None = None,
               out_stats: bool = False) -> tuple[Tensor, Tensor | None]:
    """``hourglass_forward`` with statistics handed from each residual to the next (see ``_residual``)."""
    pooled, pooled_partial = _maxpool(x, hg.low1.training)
    low, partial = _residual(hg.low1, pooled, x_partial=pooled_partial, out_stats=True)
    inner = _hourglass if isinstance(hg.low2, Hourglass) else _residual
    low, partial = inner(hg.low2, low, x_partial=partial, out_stats=True)
    low3 = _residual(hg.low3, low, x_partial=partial)[0]
    return _residual(hg.up1, x, low3, x_partial, out_stats)


def _maxpool(x: Tensor, training: bool) -> tuple[Tensor, Tensor | None]:
    """``(F.max_pool2d(x, 2, 2), its partial statistics in training (for the next residual's BN1), else None)``."""
    if training:
        y, partial = MaxPoolFn.apply(nhwc(x), True)
        return nchw(y), partial
    return nchw(_ops.maxpool2x2(nhwc(x), False)[0]), None


def head_forward(head, y: Tensor) -> tuple[Tensor, Tensor]:
    """StackHead: fused residual; ``lin`` conv with BN + ReLU (training: statistics from the GEMM epilogue, one
    BN-ReLU pass writes the feature; eval: folded into the epilogue); heatmap conv."""
    feature, heatmaps, _ = _head(head, *under_autocast(y), materialize=True)
    return feature, heatmaps


def _head(head, y: Tensor, y_partial: Tensor | None = None,
          materialize: bool = False) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
    """``head_forward`` taking ``y``'s partial statistics (see ``_residual``), returning ``(feature_or_lin, heatmaps,
    prologue)``. In training without ``materialize`` no BN-ReLU pass runs: the first output is the pre-BN ``lin``
    and ``prologue`` its BN-ReLU ``(s, t)``, only for ``_merge(prologue=)`` to apply as its feature conv loads it
    (``HeadTrainFn``; anything else would read wrong values); otherwise the feature, and ``prologue`` is None."""
    r = nhwc(_residual(head.res, y, x_partial=y_partial)[0])
    check_bn(head.lin_bn, "StackHead")
    args = (head.lin_conv.weight, head.lin_conv.bias, head.lin_bn.weight, head.lin_bn.bias,
            head.heatmap.weight, head.heatmap.bias)
    if head.training:
        count = r.numel() // r.shape[3]
        if count < 2:
            raise ValueError(f"fused StackHead: training BatchNorm needs more than 1 value per channel, got input "
                             f"shape {tuple(y.shape)}")
        feature, heatmaps, mean, var, s, t = HeadTrainFn.apply(r, head.lin_bn.eps, materialize, *args)
        update_running_stats([head.lin_bn], [mean], [var], count)
        return nchw(feature), nchw(heatmaps), None if materialize else (s, t)
    s, t = eval_scale_shift(head.lin_bn)
    feature = _ops.conv_fwd(r, head.lin_conv.weight.detach(), _f32(head.lin_conv.bias), None, None, s, t,
                            None, None, False)[0]
    heatmaps = ConvFn.apply(feature, head.heatmap.weight, head.heatmap.bias, None, False)[0]
    return nchw(feature), nchw(heatmaps), None


def merge_forward(merge, x: Tensor, feature: Tensor, heatmaps: Tensor) -> Tensor:
    """``x + conv1x1(feature) + conv1x1(heatmaps)``, both adds in GEMM epilogues."""
    return _merge(merge, *under_autocast(x, feature, heatmaps))[0]


def _merge(merge, x: Tensor, feature: Tensor, heatmaps: Tensor, out_stats: bool = False,
           prologue: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
    """``merge_forward``, in training with ``out_stats`` also returning the output's partial statistics;
    ``prologue``: ``feature`` is ``_head``'s unwritten one, read through this BN-ReLU ``(s, t)``."""
    out_stats = out_stats and merge.training
    out = ConvFn.apply(nhwc(feature), merge.feature.weight, merge.feature.bias, nhwc(x), False,
                       *(prologue or ()))[0]
    out, partial = ConvFn.apply(nhwc(heatmaps), merge.heatmap.weight, merge.heatmap.bias, out, out_stats)
    return nchw(out), partial if out_stats else None


def stacked_hourglass_forward(model, x: Tensor) -> Tensor:
    """``StackedHourglass.forward`` (input checked) with statistics handed from each producer to the next residual
    (stem ``res2 -> res3 -> hourglass``, hourglass ``-> head``, merge ``-> hourglass``). Training: all BN
    running-statistics updates at the end, together (not under ``torch.compile``, which fuses them itself and,
    before torch 2.5, cannot trace the context manager)."""
    x, = under_autocast(x)
    if torch.compiler.is_compiling():
        return _stacked_hourglass(model, x)
    with deferred_running_stats():
        return _stacked_hourglass(model, x)


def _stacked_hourglass(model, x: Tensor) -> Tensor:
    stem = model.stem
    pooled, pooled_partial = _maxpool(stem.before_pool(x), stem.res2.training)
    x, partial = _residual(stem.res2, pooled, x_partial=pooled_partial, out_stats=True)
    x, partial = _residual(stem.res3, x, x_partial=partial, out_stats=True)
    heatmaps = []
    for i in range(model.nstack):
        y, y_partial = _hourglass(model.hourglasses[i], x, partial, out_stats=True)
        feature_or_lin, hm, prologue = _head(model.heads[i], y, y_partial)
        heatmaps.append(hm)
        if i < model.nstack - 1:
            x, partial = _merge(model.merges[i], x, feature_or_lin, hm, out_stats=True, prologue=prologue)
    return torch.stack(heatmaps, 1).contiguous()  # like the reference (the maps are channels_last)
