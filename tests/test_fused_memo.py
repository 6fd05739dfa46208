"""The inference memo (eval BN coefficients, packed 3x3 weights): reused while its sources are unchanged, never
stale after a change, and never keeping old weights alive."""
import gc
import weakref

import pytest
import torch

from hgfast.fused import force_triton_on_cpu
from hgfast.fused.memo import invalidate_all, memo
from hgfast.models import Residual


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.calls


def test_memo_recomputes_exactly_when_a_source_changes():
    module = torch.nn.Linear(3, 2)
    compute = Counter()

    def value():
        return memo(module, "v", (module.weight, module.bias), compute)

    assert value() == 1 and value() == 1
    with torch.no_grad():
        module.weight.add_(1.0)  # in place: the version counter moves
    assert value() == 2 and value() == 2
    module.load_state_dict(module.state_dict())  # copy_ into the same storage
    assert value() == 3
    module.bias = torch.nn.Parameter(torch.zeros(2))  # a new object
    assert value() == 4
    module.weight.data = torch.randn(2, 3)  # the same object on new storage
    assert value() == 5
    module.to(torch.float64)
    assert value() == 6 and value() == 6
    invalidate_all()  # what a CUDA-graph replay that updated weights calls
    assert value() == 7 and value() == 7


def test_memo_holds_no_strong_reference_to_its_sources():
    module = torch.nn.Linear(3, 2)
    old = module.weight
    memo(module, "v", (old,), Counter())
    ref = weakref.ref(old)
    module.weight = torch.nn.Parameter(torch.zeros(2, 3))
    del old
    gc.collect()
    assert ref() is None


@pytest.mark.triton
def test_fused_eval_residual_follows_in_place_weight_and_statistics_updates():
    pytest.importorskip("hgfast.kernels")
    ref = Residual(6, 6).eval()
    fused = Residual(6, 6).eval()
    fused.load_state_dict(ref.state_dict())
    fused.fused = True
    x = torch.randn(2, 6, 4, 4)
    with force_triton_on_cpu(), torch.no_grad():
        for step in range(3):
            torch.testing.assert_close(fused(x), ref(x), rtol=1e-4, atol=1e-4)
            for m in (ref, fused):  # an optimiser step and new running statistics, in place
                for p in m.parameters():
                    p.mul_(0.9).add_(0.05 * (step + 1))
                m.bn2.running_var.mul_(1.5)
                m.bn3.running_mean.add_(0.3)


@pytest.mark.triton
def test_fused_eval_residual_with_a_parametrized_weight():
    """A weight computed by a parametrization (weight norm: no ``weight`` entry in the conv's parameter dict) is
    read through the module and followed as it changes."""
    pytest.importorskip("hgfast.kernels")
    from torch.nn.utils.parametrizations import weight_norm

    ref = Residual(6, 6).eval()
    fused = Residual(6, 6).eval()
    fused.load_state_dict(ref.state_dict())
    fused.fused = True
    for m in (ref, fused):
        weight_norm(m.conv2)
    x = torch.randn(2, 6, 4, 4)
    with force_triton_on_cpu(), torch.no_grad():
        for _ in range(2):
            torch.testing.assert_close(fused(x), ref(x), rtol=1e-4, atol=1e-4)
            for m in (ref, fused):
                m.conv2.parametrizations.weight.original1.mul_(1.5)
