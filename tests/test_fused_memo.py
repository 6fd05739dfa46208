"""The inference memo (eval BN coefficients, packed 3x3 weights): reused while its sources are unchanged, never
stale after a change it can see (or after ``invalidate``), never keeping old weights alive, never pickled."""
import copy
import gc
import io
import weakref

import pytest
import torch

from hgfast.fused import force_triton_on_cpu
from hgfast.fused import invalidate
from hgfast.fused.memo import memo
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
    invalidate()  # what a CUDA-graph replay that updated weights calls
    assert value() == 7 and value() == 7
    invalidate(torch.nn.Linear(3, 2))  # another module: this memo stays
    assert value() == 7
    invalidate(torch.nn.Sequential(module))  # a tree holding it: recomputed
    assert value() == 8 and value() == 8


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
    pytest.importorskip("triton")
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


def test_an_optimiser_step_forgets_the_memos_of_its_parameters_only():
    """Fused optimisers (``Adam(fused=True)``) write the parameters without moving their version counters; the
    step hook registered by ``hgfast.fused.memo`` forgets what was derived from them (and moves the generation, so
    a ``GraphedForward`` captures again); another network's step touches neither."""
    from hgfast.fused.memo import generation

    module, other = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    compute, kept = Counter(), Counter()

    def value():
        return memo(module, "v", (module.weight, module.bias), compute)

    def other_value():
        return memo(other, "v", (other.weight,), kept)

    try:
        opt = torch.optim.Adam(module.parameters(), fused=True)
    except RuntimeError as exc:  # no fused CPU Adam in this torch
        pytest.skip(str(exc))
    assert value() == 1 and other_value() == 1
    before = generation()
    torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1).step()  # unrelated: nothing forgotten
    assert generation() == before and value() == 1
    module(torch.randn(4, 3)).sum().backward()
    version = module.weight._version
    opt.step()
    assert module.weight._version == version  # what the version check alone would miss
    assert generation() == before + 1 and value() == 2 and value() == 2 and other_value() == 1


@pytest.mark.triton
def test_fused_eval_residual_with_a_parametrized_weight():
    """A weight computed by a parametrization (weight norm: no ``weight`` entry in the conv's parameter dict) is
    read through the module and followed as it changes."""
    pytest.importorskip("triton")
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


def fused_eval_pair():
    ref = Residual(6, 6).eval()
    fused = Residual(6, 6).eval()
    fused.load_state_dict(ref.state_dict())
    fused.fused = True
    return ref, fused


@pytest.mark.triton
def test_fused_eval_residual_pickles_and_deep_copies_after_a_forward():
    """The memo lives outside the module: a whole-module ``torch.save`` (or a multiprocessing spawn) after a fused
    forward works, and a deep copy recomputes its own values instead of sharing the original's."""
    pytest.importorskip("triton")
    ref, fused = fused_eval_pair()
    x = torch.randn(2, 6, 4, 4)
    with force_triton_on_cpu(), torch.no_grad():
        expected = fused(x)
        buffer = io.BytesIO()
        torch.save(fused, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
        twin = copy.deepcopy(fused)
        twin.conv2.weight.data.mul_(3.0)  # no version bump; the twin has no memo yet
        ref.conv2.weight.data.mul_(3.0)
        torch.testing.assert_close(twin(x), ref(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fused(x), expected, rtol=0, atol=0)  # the original keeps its own weights


@pytest.mark.triton
def test_fused_eval_residual_after_writes_through_data_needs_invalidate():
    """``p.data`` writes move no version counter, so the memo cannot see them; ``invalidate(module)`` makes the next
    forward read the new values. ``load_state_dict`` and in-place writes under ``no_grad`` need nothing."""
    pytest.importorskip("triton")
    ref, fused = fused_eval_pair()
    x = torch.randn(2, 6, 4, 4)
    with force_triton_on_cpu(), torch.no_grad():
        torch.testing.assert_close(fused(x), ref(x), rtol=1e-4, atol=1e-4)
        var = torch.rand(3) + 0.5
        for m in (ref, fused):
            m.conv2.weight.data.mul_(10.0)
            m.bn3.running_var.data.copy_(var)
        invalidate(fused)
        torch.testing.assert_close(fused(x), ref(x), rtol=1e-4, atol=1e-4)
        state = {k: v * 0.5 if v.is_floating_point() else v for k, v in ref.state_dict().items()}
        for m in (ref, fused):
            m.load_state_dict(state)
        torch.testing.assert_close(fused(x), ref(x), rtol=1e-4, atol=1e-4)
        w, gamma = torch.randn(3, 3, 3, 3), torch.rand(6)
        for m in (ref, fused):
            m.conv2.weight.copy_(w)
            m.bn1.weight.copy_(gamma)
        torch.testing.assert_close(fused(x), ref(x), rtol=1e-4, atol=1e-4)
