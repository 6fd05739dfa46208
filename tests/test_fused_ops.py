"""``torch.library.opcheck`` on every ``hgfast::`` custom op, ``ops.direct`` (the ops without the dispatcher in plain
eager mode), and ``torch.compile`` capture of a fused residual."""
import pytest
import torch

pytestmark = pytest.mark.triton
pytest.importorskip("triton")  # only a missing triton skips; a broken hgfast.kernels fails
import hgfast.kernels  # noqa: E402,F401

from hgfast.fused import force_triton_on_cpu, ops  # noqa: E402
from hgfast.kernels.conv import pack_weight  # noqa: E402
from hgfast.models import Residual  # noqa: E402


def nhwc(*shape):
    return torch.randn(*shape)


def vec(c):
    return torch.rand(c) + 0.5


def cases():
    n, h, w, ci, co = 1, 4, 6, 5, 3
    x, dy, x2 = nhwc(n, h, w, ci), nhwc(n, h, w, co), nhwc(n, h, w, co)
    w3 = torch.randn(co, ci, 3, 3)
    partial = ops.conv_fwd(x, torch.randn(co, ci, 1, 1), None, None, None, None, None, None, None, True)[1]
    c, m = 6, 3  # the one-kernel inference residual: identity skip, C -> M -> C
    xr, w2 = nhwc(n, h, w, c), torch.randn(m, m, 3, 3)
    residual = (xr, torch.randn(m, c, 1, 1), vec(m), vec(c), vec(c), vec(m), vec(m), w2, pack_weight(w2, xr.dtype),
                None, vec(m), vec(m), torch.randn(c, m, 1, 1), vec(c))
    return [
        (ops.conv_fwd, (x, w3, vec(co), vec(ci), vec(ci), vec(co), vec(co), dy, nhwc(n, h // 2, w // 2, co), True)),
        (ops.conv_fwd, (x, torch.randn(co, ci, 1, 1), None, None, None, None, None, None, None, False)),
        (ops.conv_fwd, (x, w3, None, None, None, None, None, None, None, False, pack_weight(w3, x.dtype))),
        (ops.residual_eval, (*residual, nhwc(n, h // 2, w // 2, c))),
        (ops.residual_eval, (*residual, None)),
        (ops.residual_eval, (x, torch.randn(m, ci, 1, 1), vec(m), vec(ci), vec(ci), *residual[5:12],
                             torch.randn(co, m, 1, 1), vec(co), None, dy)),  # skip conv 5 -> 3: its output added
        (ops.conv_dgrad, (dy, w3, x, vec(ci), vec(ci), vec(ci), x2, vec(co), vec(co), vec(co), nhwc(n, h, w, ci))),
        (ops.conv_dgrad, (dy, w3, None, None, None, None, None, None, None, None, None)),
        (ops.conv_dgrad, (dy, w3, None, None, None, None, None, None, None, None, None, pack_weight(w3, x.dtype))),
        (ops.conv_wgrad, (x, dy, 3, vec(ci), vec(ci), x2, vec(co), vec(co), vec(co))),
        (ops.upsample_add, (dy, nhwc(n, h // 2, w // 2, co))),
        (ops.upsample_add_backward, (dy,)),
        (ops.maxpool2x2, (x, True)),
        (ops.maxpool2x2, (nhwc(n, h + 1, w - 1, ci), False)),
        (ops.maxpool2x2_backward, (x, nhwc(n, h // 2, w // 2, ci))),
        (ops.channel_stats, (x,)),
        (ops.bn_train_coeffs, (partial, vec(co), torch.randn(co), 1e-5)),
        (ops.bn_backward_coeffs, (partial[:2].contiguous(), torch.randn(co), vec(co), torch.randn(co), 1e-3, 24)),
        (ops.bn_relu, (x, vec(ci), vec(ci))),
        (ops.bn_backward_apply, (dy, x2, vec(co), vec(co), vec(co), nhwc(n, h, w, co))),
    ]


N_CASES = 20  # a constant: cases() runs kernels, so it must not run at collection (outside the device fixture)


def test_every_op_has_a_case():
    assert len(cases()) == N_CASES
    assert {op for op, _ in cases()} == set(ops.ALL_OPS)


@pytest.mark.parametrize("index", range(N_CASES))
def test_opcheck(index):
    torch.manual_seed(index)
    op, args = cases()[index]
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("index", range(N_CASES))
def test_direct_call_matches_the_registered_op(index):
    torch.manual_seed(index)
    op, args = cases()[index]
    name = next(name for name in vars(ops.direct) if getattr(ops, name) is op)
    direct, registered = getattr(ops.direct, name)(*args), getattr(torch.ops.hgfast, name)(*args)
    for a, b in zip(*(out if isinstance(out, tuple) else (out,) for out in (direct, registered))):
        assert torch.equal(a, b)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
def test_direct_calls_go_through_the_dispatcher_wherever_something_watches():
    """Fake tensors, dispatch modes (make_fx, FlopCounterMode, ``count_stats_passes``) and ``torch.jit.trace`` must
    see the ops; only plain eager calls skip the dispatcher."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode

    x = torch.randn(1, 4, 4, 8)
    assert ops.plain_eager(x)
    with FakeTensorMode() as mode:
        assert not ops.plain_eager(mode.from_tensor(x))

    seen = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func._schema.name)
            return func(*args, **(kwargs or {}))

    with Watch():
        assert not ops.plain_eager(x)
        ops.direct.channel_stats(x)
    assert "hgfast::channel_stats" in seen
    traced = torch.jit.trace(lambda t: ops.direct.channel_stats(t), (x,), check_trace=False)
    assert "hgfast::channel_stats" in str(traced.graph)


def test_fused_residual_compiles_without_graph_breaks():
    torch._dynamo.reset()
    res = Residual(5, 6)
    res.fused = True
    x = torch.randn(1, 5, 4, 6, requires_grad=True)
    with force_triton_on_cpu():
        expected = res(x)
        compiled = torch.compile(res, backend="aot_eager", fullgraph=True)
        out = compiled(x)
        out.sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert x.grad is not None and res.conv2.weight.grad is not None


def test_fused_inference_residual_compiles_without_graph_breaks():
    """Eval mode, identity skip: the one-op inference residual (its implementation is chosen at run time, inside
    the op, so the trace is the same whichever runs)."""
    torch._dynamo.reset()
    res = Residual(6, 6).eval()
    res.fused = True
    x = torch.randn(2, 6, 4, 6)
    with force_triton_on_cpu(), torch.no_grad():
        expected = res(x)
        out = torch.compile(res, backend="aot_eager", fullgraph=True)(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
