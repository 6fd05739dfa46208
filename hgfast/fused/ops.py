"""``torch.library`` custom ops (namespace ``hgfast``) around the Triton launchers, with fake implementations.

Registered so ``torch.compile`` captures the fused model without graph breaks; differentiation lives in
``hgfast.fused.functions`` (autograd Functions composed of these ops). Optional outputs are returned as empty
tensors (``(3, 0, C)`` statistics when not requested). All activations are NHWC-contiguous.

The fused modules call the ops through ``direct``: in plain eager mode straight to their Python functions, since
the dispatcher's round trip through a Python custom op costs more host time than the launch itself.
"""
import types
from typing import Optional  # no `from __future__ import annotations`: torch < 2.5 needs real types for the schema

import torch
from torch import Tensor

from .. import kernels as K
from ..kernels.common import block_m, dot_precision, elementwise_block, next_pow2
from ..kernels.residual_eval import eval_tile
from .fastest import fastest


def _tiles(m: int) -> int:
    """Row tiles (partial statistics) of a GEMM over ``m`` rows."""
    return -(-m // block_m(m))


def _elementwise_tiles(m: int) -> int:
    """Row tiles (partial statistics) of an elementwise kernel over ``m`` rows (``channel_stats``, ``maxpool2x2``)."""
    return -(-m // elementwise_block())


_functions = {}  # op name -> the Python function the op runs


def op(fn):
    """Register ``fn`` as the custom op ``hgfast::<fn's name>`` (mutating none of its arguments)."""
    _functions[fn.__name__] = fn
    return torch.library.custom_op(f"hgfast::{fn.__name__}", fn, mutates_args=())


_compiling, _tracing, _dispatch_modes = (torch.compiler.is_compiling, torch._C._is_tracing,
                                         torch._C._len_torch_dispatch_stack)


def plain_eager(t: Tensor) -> bool:
    """True where calling an op's function directly does what the dispatcher would: ``t`` is a plain tensor, outside
    ``torch.compile``/``torch.export`` and ``torch.jit`` tracing and any Python dispatch mode (fake tensors,
    functionalization, ``make_fx``, counting modes). ``is_compiling`` comes first: Dynamo folds it to True and
    traces nothing after it."""
    return not _compiling() and type(t) is Tensor and not _tracing() and not _dispatch_modes()


@op
def conv_fwd(x: Tensor, weight: Tensor, bias: Optional[Tensor], pro_scale: Optional[Tensor],
             pro_shift: Optional[Tensor], epi_scale: Optional[Tensor], epi_shift: Optional[Tensor],
             residual: Optional[Tensor], low: Optional[Tensor], stats: bool,
             packed: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    y, partial = K.conv2d_fwd(x, weight, bias, pro_scale, pro_shift, epi_scale, epi_shift, residual, low, stats,
                              packed)
    if partial is None:
        partial = x.new_empty((3, 0, weight.shape[0]), dtype=torch.float32)
    return y, partial


@conv_fwd.register_fake
def _(x, weight, bias, pro_scale, pro_shift, epi_scale, epi_shift, residual, low, stats, packed=None):
    n, h, w, _ = x.shape
    cout = weight.shape[0]
    t = _tiles(n * h * w) if stats else 0
    return x.new_empty((n, h, w, cout)), x.new_empty((3, t, cout), dtype=torch.float32)


@op
def residual_eval(x: Tensor, w1: Tensor, b1: Optional[Tensor], s1: Tensor, t1: Tensor, s2: Tensor, t2: Tensor,
                  w2: Tensor, w2_packed: Tensor, b2: Optional[Tensor], s3: Tensor, t3: Tensor, w3: Tensor,
                  b3: Optional[Tensor], low: Optional[Tensor], skip: Optional[Tensor] = None) -> Tensor:
    """Inference residual ``skip + conv3(bn3relu(conv2(bn2relu(conv1(bn1relu(x)))))) [+ up2x(low)]`` (eval BNs as
    scale/shift, biases added before the BN that follows; ``skip`` the skip conv's output, None: the identity ``x``).
    With an identity skip, whichever of these ``fastest`` finds faster for the shape (``HGFAST_EVAL_RESIDUAL=<name>``
    pins one): ``single``, ``K.residual_eval`` (one kernel, its default tile); ``single-64``, the same with 64-row
    tiles (where the default has 128: two programs per SM instead of one, more halo recompute); ``three``, three
    ``conv2d_fwd`` launches - the only form with a skip conv or a bottleneck wider than the one kernel's
    (``K.residual_eval_fits``)."""
    def single(rows=None):
        return lambda: K.residual_eval(x, s1, t1, w1, b1, s2, t2, w2_packed, b2, s3, t3, w3, b3, low, rows)

    def three():
        a = K.conv2d_fwd(x, w1, b1, s1, t1, s2, t2)[0]
        b = K.conv2d_fwd(a, w2, b2, None, None, s3, t3, packed=w2_packed)[0]
        return K.conv2d_fwd(b, w3, b3, residual=x if skip is None else skip, low=low)[0]

    if skip is not None or not K.residual_eval_fits(w1.shape[0], x.dtype):
        return three()
    candidates = {"single": single(), "single-64": single(64), "three": three}
    n, h, w, c = x.shape  # batch sizes up to the next power of two share a choice (as the GEMMs' autotune keys),
    # as long as the one kernel's default tile and the precision are the same
    key = (next_pow2(n), eval_tile(n, h, w), h, w, c, w1.shape[0], x.dtype, dot_precision(x.dtype), x.device.index,
           low is not None)
    return fastest("EVAL_RESIDUAL", key, candidates, x.device)()


@residual_eval.register_fake
def _(x, w1, b1, s1, t1, s2, t2, w2, w2_packed, b2, s3, t3, w3, b3, low, skip=None):
    return x.new_empty(x.shape[:3] + (w3.shape[0],))


@op
def conv_dgrad(dy: Tensor, weight: Tensor, x: Optional[Tensor], scale: Optional[Tensor], shift: Optional[Tensor],
               mean: Optional[Tensor], x2: Optional[Tensor], a: Optional[Tensor], b: Optional[Tensor],
               c: Optional[Tensor], add: Optional[Tensor], packed: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    pending = None if x2 is None else (x2, a, b, c)
    dv, sums = K.conv2d_dgrad(dy, weight, x, scale, shift, mean, dy_pending=pending, add=add, packed=packed)
    if sums is None:
        sums = dy.new_empty((2, 0, weight.shape[1]), dtype=torch.float32)
    return dv, sums


@conv_dgrad.register_fake
def _(dy, weight, x, scale, shift, mean, x2, a, b, c, add, packed=None):
    n, h, w, _ = dy.shape
    cin = weight.shape[1]
    t = _tiles(n * h * w) if x is not None else 0
    return dy.new_empty((n, h, w, cin)), dy.new_empty((2, t, cin), dtype=torch.float32)


@op
def conv_wgrad(x: Tensor, dy: Tensor, kernel_size: int, scale: Optional[Tensor], shift: Optional[Tensor],
               x2: Optional[Tensor], a: Optional[Tensor], b: Optional[Tensor],
               c: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    pending = None if x2 is None else (x2, a, b, c)
    return K.conv2d_wgrad(x, dy, kernel_size, scale, shift, dy_pending=pending, bias=True)


@conv_wgrad.register_fake
def _(x, dy, kernel_size, scale, shift, x2, a, b, c):
    cin, cout = x.shape[3], dy.shape[3]
    return (x.new_empty((cout, cin, kernel_size, kernel_size), dtype=torch.float32),
            x.new_empty((cout,), dtype=torch.float32))


@op
def upsample_add(skip: Tensor, low: Tensor) -> Tensor:
    return K.upsample_add(skip, low)


@upsample_add.register_fake
def _(skip, low):
    return torch.empty_like(skip)


@op
def upsample_add_backward(grad_out: Tensor) -> Tensor:
    return K.upsample_add_backward(grad_out)


@upsample_add_backward.register_fake
def _(grad_out):
    n, h, w, c = grad_out.shape
    return grad_out.new_empty((n, h // 2, w // 2, c))


@op
def maxpool2x2(x: Tensor, stats: bool) -> tuple[Tensor, Tensor]:
    """2x2 max-pool of NHWC ``x`` and, with ``stats``, the partial statistics of its output (else empty)."""
    y, partial = K.maxpool2x2(x, stats)
    if partial is None:
        partial = x.new_empty((3, 0, x.shape[3]), dtype=torch.float32)
    return y, partial


@maxpool2x2.register_fake
def _(x, stats):
    n, h, w, c = x.shape
    t = _elementwise_tiles(n * (h // 2) * (w // 2)) if stats else 0
    return x.new_empty((n, h // 2, w // 2, c)), x.new_empty((3, t, c), dtype=torch.float32)


@op
def maxpool2x2_backward(x: Tensor, grad_out: Tensor) -> Tensor:
    return K.maxpool2x2_backward(x, grad_out)


@maxpool2x2_backward.register_fake
def _(x, grad_out):
    return torch.empty_like(x)


@op
def channel_stats(x: Tensor) -> Tensor:
    """Partial per-channel statistics ``(3, T, C)`` of an NHWC tensor (a standalone pass over it)."""
    return K.channel_stats(x)


@channel_stats.register_fake
def _(x):
    c = x.shape[3]
    return x.new_empty((3, _elementwise_tiles(x.numel() // c), c), dtype=torch.float32)


@op
def bn_train_coeffs(partial: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> Tensor:
    """``(4, C)`` fp32 rows mean, biased var, scale, shift of a training BatchNorm (see ``kernels.bn_stats``)."""
    return K.bn_train_coeffs(partial, gamma, beta, eps)


@bn_train_coeffs.register_fake
def _(partial, gamma, beta, eps):
    return partial.new_empty((4, partial.shape[2]))


@op
def bn_backward_coeffs(sums: Tensor, mean: Tensor, var: Tensor, gamma: Tensor, eps: float, count: int) -> Tensor:
    """``(5, C)`` fp32 rows ``a, b, c`` (``dx = dv * a + x * b + c``), ``dgamma``, ``dbeta``."""
    return K.bn_backward_coeffs(sums, mean, var, gamma, eps, count)


@bn_backward_coeffs.register_fake
def _(sums, mean, var, gamma, eps, count):
    return sums.new_empty((5, sums.shape[2]))


@op
def bn_relu(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    return K.bn_relu(x, scale, shift)


@bn_relu.register_fake
def _(x, scale, shift):
    return torch.empty_like(x)


@op
def bn_backward_apply(g: Tensor, x: Tensor, a: Tensor, b: Tensor, c: Tensor, add: Optional[Tensor]) -> Tensor:
    return K.bn_backward_apply(g, x, a, b, c, add)


@bn_backward_apply.register_fake
def _(g, x, a, b, c, add):
    return torch.empty_like(g)


ALL_OPS = (conv_fwd, residual_eval, conv_dgrad, conv_wgrad, upsample_add, upsample_add_backward, maxpool2x2,
           maxpool2x2_backward, channel_stats, bn_train_coeffs, bn_backward_coeffs, bn_relu, bn_backward_apply)


def _direct_call(name: str):
    """``hgfast::<name>`` as the fused modules call it: where ``plain_eager`` holds for the first argument, the op's
    Python function runs directly, otherwise the registered op. Measured on CPU with the Triton launch stubbed
    (benchmarks/test_bench_host.py): the dispatcher's round trip costs ~8 µs per call, and an 8-stack training step
    makes ~2000 calls."""
    function, registered = _functions[name], getattr(torch.ops.hgfast, name)

    def call(*args):
        return function(*args) if plain_eager(args[0]) else registered(*args)

    call.__name__ = name
    return call


direct = types.SimpleNamespace(**{name: _direct_call(name) for name in _functions})
