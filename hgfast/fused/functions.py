"""How the fused ops are differentiated: ``torch.autograd.Function``s composed of the ``hgfast::`` custom ops.

Activations are NHWC-contiguous; parameters keep their own dtype (1x1 weights are rounded to the activation dtype
inside the GEMMs, 3x3 weights packed once per forward in that dtype and reused by the backward; gradients are cast
back to the parameter dtype). BN math, per channel, with ``M`` rows, batch ``mean``/biased ``var`` and
``invstd = rsqrt(var + eps)``: forward ``relu(x * s + t)`` with ``s = gamma * invstd``, ``t = beta - mean * s``;
backward from ``dv`` (gradient at the BN output, ReLU mask applied) ``dbeta = sum(dv)``,
``dgamma = invstd * sum(dv * (x - mean))`` and ``dx = dv * a + x * b + c`` (``bn_backward_coeffs``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..kernels.conv import pack_weight
from .ops import direct as _ops


def _f32(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().float().contiguous()


def _like(grad: Tensor, param: Tensor | None) -> Tensor | None:
    """``grad`` in ``param``'s dtype (None without a parameter)."""
    return None if param is None else grad.to(param.dtype)


def bn_train(partial: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Training BN from partial statistics ``(3, T, C)``: fp32 ``(mean, biased var, s, t)``, one launch."""
    return _ops.bn_train_coeffs(partial, _f32(gamma), _f32(beta), eps).unbind(0)


def bn_backward_coeffs(sums: Tensor, mean: Tensor, var: Tensor, gamma: Tensor, eps: float, count: int):
    """From dgrad partial sums ``(2, T, C)`` -> ``((a, b, c), dgamma, dbeta)`` with ``dx = dv * a + x * b + c``."""
    a, b, c, dgamma, dbeta = _ops.bn_backward_coeffs(sums, mean, var, _f32(gamma), eps, count).unbind(0)
    return (a, b, c), dgamma, dbeta


class ResidualTrainFn(torch.autograd.Function):
    """Training-mode fused residual ``BN-ReLU-conv1x1 -> BN-ReLU-conv3x3 -> BN-ReLU-conv1x1 + skip [+ up2x(low)]``.

    Forward: three GEMM kernels (each applying the pending BN-ReLU as it loads its input, the first two writing
    partial statistics of their output), plus the skip conv if any. BN1 finalises ``x_partial``, the partial
    statistics of ``x`` handed over by the kernel that produced it, or else runs a standalone stats pass over ``x``
    (pass ``None``). Saves only ``x`` and the two pre-BN conv outputs. ``eps`` is the tuple of the three BNs' eps.
    Returns ``(y, y_partial, mean1, var1, mean2, var2, mean3, var3)``, all but ``y`` non-differentiable:
    ``y_partial`` the partial statistics of ``y`` from the last GEMM's epilogue when ``y_stats`` (else empty), for
    the next residual's BN1; the batch statistics for the running-stat update.
    Backward: per conv, wgrad recomputes BN-ReLU of its input; dgrad applies the ReLU mask and writes BN-backward
    partial sums; the resulting BN-backward apply is the prologue of the next dgrad/wgrad; the last one is a
    standalone pass that also adds the skip gradient.
    """

    @staticmethod
    def forward(ctx, x, low, x_partial, y_stats, eps, g1, b1, w1, bias1, g2, b2, w2, bias2, g3, b3, w3, bias3,
                w_skip, bias_skip):
        dt, (e1, e2, e3) = x.dtype, eps
        mean1, var1, s1, t1 = bn_train(_ops.channel_stats(x) if x_partial is None else x_partial, g1, b1, e1)
        skip = x if w_skip is None else \
            _ops.conv_fwd(x, w_skip, _f32(bias_skip), None, None, None, None, None, None, False)[0]
        c1, p1 = _ops.conv_fwd(x, w1, _f32(bias1), s1, t1, None, None, None, None, True)
        mean2, var2, s2, t2 = bn_train(p1, g2, b2, e2)
        w2p = pack_weight(w2, dt)  # the 3x3 operand, read again by the backward
        c2, p2 = _ops.conv_fwd(c1, w2, _f32(bias2), s2, t2, None, None, None, None, True, w2p)
        mean3, var3, s3, t3 = bn_train(p2, g3, b3, e3)
        y, y_partial = _ops.conv_fwd(c2, w3, _f32(bias3), s3, t3, None, None, skip, low, y_stats)
        ctx.save_for_backward(x, c1, c2, w1, w2, w2p, w3, w_skip, g1, g2, g3, s1, t1, s2, t2, s3, t3,
                              mean1, var1, mean2, var2, mean3, var3, bias1, bias2, bias3, bias_skip)
        ctx.eps, ctx.has_low = eps, low is not None
        stats = (y_partial, mean1, var1, mean2, var2, mean3, var3)
        ctx.mark_non_differentiable(*stats)
        ctx.set_materialize_grads(False)  # no zero tensors for the statistics: only y ever has a gradient
        return (y, *stats)

    @staticmethod
    def backward(ctx, dy, *_):
        (x, c1, c2, w1, w2, w2p, w3, w_skip, g1, g2, g3, s1, t1, s2, t2, s3, t3,
         mean1, var1, mean2, var2, mean3, var3, bias1, bias2, bias3, bias_skip) = ctx.saved_tensors
        dt, (e1, e2, e3) = x.dtype, ctx.eps
        count = x.numel() // x.shape[3]
        dy = dy.to(dt).contiguous()
        grad_low = _ops.upsample_add_backward(dy) if ctx.has_low else None
        if w_skip is None:
            dx_skip, dw_skip, db_skip = dy, None, None
        else:
            dw_skip, db_skip = _ops.conv_wgrad(x, dy, 1, None, None, None, None, None, None)
            dx_skip = _ops.conv_dgrad(dy, w_skip, None, None, None, None, None, None, None, None, None)[0]
        # conv3 (1x1): its upstream gradient is dy itself.
        dw3, db3 = _ops.conv_wgrad(c2, dy, 1, s3, t3, None, None, None, None)
        dv3, sums3 = _ops.conv_dgrad(dy, w3, c2, s3, t3, mean3, None, None, None, None, None)
        k3, dg3, dbeta3 = bn_backward_coeffs(sums3, mean3, var3, g3, e3, count)
        # conv2 (3x3): upstream gradient dc2 = dv3 * a3 + c2 * b3 + c3, applied in the prologues.
        dw2, db2 = _ops.conv_wgrad(c1, dv3, 3, s2, t2, c2, *k3)
        dv2, sums2 = _ops.conv_dgrad(dv3, w2, c1, s2, t2, mean2, c2, *k3, None, w2p)
        k2, dg2, dbeta2 = bn_backward_coeffs(sums2, mean2, var2, g2, e2, count)
        # conv1 (1x1): upstream gradient dc1 = dv2 * a2 + c1 * b2 + c2.
        dw1, db1 = _ops.conv_wgrad(x, dv2, 1, s1, t1, c1, *k2)
        dv1, sums1 = _ops.conv_dgrad(dv2, w1, x, s1, t1, mean1, c1, *k2, None)
        k1, dg1, dbeta1 = bn_backward_coeffs(sums1, mean1, var1, g1, e1, count)
        dx = _ops.bn_backward_apply(dv1, x, *k1, dx_skip)

        return (dx, grad_low, None, None, None,
                _like(dg1, g1), _like(dbeta1, g1), _like(dw1, w1), _like(db1, bias1),
                _like(dg2, g2), _like(dbeta2, g2), _like(dw2, w2), _like(db2, bias2),
                _like(dg3, g3), _like(dbeta3, g3), _like(dw3, w3), _like(db3, bias3),
                _like(dw_skip, w_skip), _like(db_skip, bias_skip))


class HeadTrainFn(torch.autograd.Function):
    """Training-mode post-activation head ``feature = relu(bn(conv1x1(r))); heatmaps = conv1x1(feature)``.

    Forward: the ``lin`` GEMM writes partial statistics of its output; the heatmap GEMM applies BN-ReLU as it loads
    ``lin``. ``materialize``: one BN-ReLU pass writes ``feature`` out (returned); otherwise the first output is
    ``lin`` itself standing for ``feature``, and its consumer must apply the BN-ReLU ``(s, t)`` as a prologue and
    return the gradient of that prologue's output as its gradient (``ConvFn`` with ``scale``/``shift``: the merge).
    Saves ``r`` and the pre-BN ``lin``. Returns ``(feature or lin, heatmaps, mean, var, s, t)``, all but the first
    two non-differentiable.
    Backward: the heatmap dgrad adds the gradient reaching ``feature`` from elsewhere (the merge) before the ReLU
    mask and writes the BN-backward sums; the heatmap wgrad recomputes BN-ReLU(lin); the BN-backward apply is the
    prologue of the ``lin`` dgrad and wgrad.
    """

    @staticmethod
    def forward(ctx, r, eps, materialize, w, bias, gamma, beta, w_heat, bias_heat):
        lin, partial = _ops.conv_fwd(r, w, _f32(bias), None, None, None, None, None, None, True)
        mean, var, s, t = bn_train(partial, gamma, beta, eps)
        heatmaps, _ = _ops.conv_fwd(lin, w_heat, _f32(bias_heat), s, t, None, None, None, None, False)
        feature = _ops.bn_relu(lin, s, t) if materialize else lin
        ctx.save_for_backward(r, lin, w, bias, gamma, w_heat, bias_heat, s, t, mean, var)
        ctx.eps = eps
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(mean, var, s, t)
        return feature, heatmaps, mean, var, s, t

    @staticmethod
    def backward(ctx, d_feature, d_heatmaps, *_):
        r, lin, w, bias, gamma, w_heat, bias_heat, s, t, mean, var = ctx.saved_tensors
        dt = r.dtype
        count = r.numel() // r.shape[3]
        if d_heatmaps is None:
            d_heatmaps = lin.new_zeros(lin.shape[:3] + (w_heat.shape[0],))
        d_heatmaps = d_heatmaps.to(dt).contiguous()
        d_feature = None if d_feature is None else d_feature.to(dt).contiguous()
        dw_heat, db_heat = _ops.conv_wgrad(lin, d_heatmaps, 1, s, t, None, None, None, None)
        dv, sums = _ops.conv_dgrad(d_heatmaps, w_heat, lin, s, t, mean, None, None, None, None, d_feature)
        k, dgamma, dbeta = bn_backward_coeffs(sums, mean, var, gamma, ctx.eps, count)
        dw, db = _ops.conv_wgrad(r, dv, 1, None, None, lin, *k)
        dr = _ops.conv_dgrad(dv, w, None, None, None, None, lin, *k, None)[0]
        return (dr, None, None, _like(dw, w), _like(db, bias), _like(dgamma, gamma), _like(dbeta, gamma),
                _like(dw_heat, w_heat), _like(db_heat, bias_heat))


class MaxPoolFn(torch.autograd.Function):
    """2x2 max-pool of NHWC ``x`` (``kernels.maxpool``) returning ``(y, y_partial)``: the partial statistics of ``y``
    when ``stats`` (else empty), for the next residual's BN1; non-differentiable. Saves only ``x`` (in an hourglass
    kept anyway by ``up1``): the backward finds each window's maximum again instead of storing indices."""

    @staticmethod
    def forward(ctx, x, stats):
        y, partial = _ops.maxpool2x2(x, stats)
        ctx.save_for_backward(x)
        ctx.mark_non_differentiable(partial)
        ctx.set_materialize_grads(False)
        return y, partial

    @staticmethod
    def backward(ctx, dy, _):
        if dy is None:
            return None, None
        x, = ctx.saved_tensors
        return _ops.maxpool2x2_backward(x, dy.to(x.dtype).contiguous()), None


class ConvFn(torch.autograd.Function):
    """``conv(x, w) + bias [+ residual]`` (1x1 or 3x3 pad 1) on NHWC tensors, with Triton dgrad and wgrad.

    Returns ``(y, y_partial)``: the partial statistics of ``y`` from the GEMM epilogue when ``stats`` (for the
    consuming residual's BN1), else empty; non-differentiable. With ``scale``/``shift`` (fp32 ``(C,)``, not
    differentiable) the conv reads ``relu(x * scale + shift)`` (the wgrad recomputes it) and the gradient returned
    for ``x`` is that of ``relu(x * scale + shift)``: for an ``x`` that stands for it, ``HeadTrainFn``'s unwritten
    feature, whose backward applies the ReLU mask and the BN backward.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, residual, stats, scale=None, shift=None):
        y, partial = _ops.conv_fwd(x, weight, _f32(bias), scale, shift, None, None, residual, None, stats)
        ctx.save_for_backward(x, weight, bias, scale, shift)
        ctx.has_res = residual is not None
        ctx.mark_non_differentiable(partial)
        ctx.set_materialize_grads(False)  # no zero tensor for the statistics: only y ever has a gradient
        return y, partial

    @staticmethod
    def backward(ctx, dy, _):
        x, weight, bias, scale, shift = ctx.saved_tensors
        dy = dy.to(x.dtype).contiguous()
        dw, db = _ops.conv_wgrad(x, dy, weight.shape[2], scale, shift, None, None, None, None)
        dx = _ops.conv_dgrad(dy, weight, None, None, None, None, None, None, None, None, None)[0]
        return dx, _like(dw, weight), _like(db, bias), dy if ctx.has_res else None, None, None, None
