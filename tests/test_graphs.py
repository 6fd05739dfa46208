"""CUDA graphs (hgfast.graphs): warm-up restore, argument errors, capture-readiness of the fused training step on
the CPU (no graph breaks = no host syncs), and on a GPU: graphed vs eager training and inference."""
import copy
import math

import pytest
import torch

from hgfast.fused import force_triton_on_cpu, invalidate
from hgfast.graphs import GraphedForward, GraphedTrainStep, _Snapshot, _StaticInputs, release_capturable
from hgfast.models import StackedHourglass
from hgfast.ops import heatmap_mse_loss
from hgfast.train.config import ConfigError, resolve
from hgfast.train.loop import heatmap_loss

OPTIMIZERS = {"adam": lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4),
              "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9)}


def tiny_model(fused=False, nfeat=16):
    return StackedHourglass(nstack=2, nfeat=nfeat, njoints=3, depth=1, fused=fused)


def batch(seed, device=None, size=32):
    """Images, keypoints and weights drawn on the CPU from a seeded generator, on ``device`` (default: the default
    device, CUDA in the GPU runs of triton-marked tests)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g, device="cpu")
    kp = torch.rand(2, 3, 2, generator=g, device="cpu") * (size // 4 - 1)
    w = torch.ones(2, 3, device="cpu")
    device = device or torch.get_default_device()
    return x.to(device), kp.to(device), w.to(device)


def eager_step(model, optimizer, x, kp, w, amp_dtype=None):
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        pred = model(x)
    loss = heatmap_mse_loss(pred.float(), kp, weights=w, check_keypoints=False)
    loss.backward()
    optimizer.step()
    return loss.detach()


def assert_same_state(a, b, **tol):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, msg=lambda m: f"{name}: {m}", **tol)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_snapshot_restore_makes_warm_up_steps_leave_no_trace(name):
    model, twin = tiny_model(), tiny_model()
    twin.load_state_dict(model.state_dict())
    optimizer, twin_optimizer = OPTIMIZERS[name](model.parameters()), OPTIMIZERS[name](twin.parameters())
    snapshot = _Snapshot(model, optimizer)  # fresh optimiser: its state is created by the warm-up steps
    for seed in (1, 2):
        eager_step(model, optimizer, *batch(seed))
    snapshot.restore()
    assert_same_state(model, twin, rtol=0, atol=0)  # incl. BN running statistics and num_batches_tracked
    for seed in (3, 4):  # after the reset, training continues as a fresh run would, bit for bit
        loss, twin_loss = eager_step(model, optimizer, *batch(seed)), eager_step(twin, twin_optimizer, *batch(seed))
        assert torch.equal(loss, twin_loss)
    assert_same_state(model, twin, rtol=0, atol=0)

    snapshot = _Snapshot(model, optimizer)  # existing state (a resumed run) is restored to its values
    expected = copy.deepcopy(optimizer.state_dict())
    eager_step(model, optimizer, *batch(5))
    snapshot.restore()
    assert_same_state(model, twin, rtol=0, atol=0)
    for p, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(value, expected["state"][p][key], rtol=0, atol=0)


def test_static_inputs_reject_other_shapes_and_dtypes():
    inputs = _StaticInputs("GraphedTrainStep", [torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64)], "cpu")
    inputs.load([torch.ones(2, 3), torch.arange(2)])
    assert torch.equal(inputs.buffers[0], torch.ones(2, 3)) and torch.equal(inputs.buffers[1], torch.arange(2))
    with pytest.raises(ValueError, match=r"argument 0 must be \(2, 3\) torch.float32.*got \(4, 3\)"):
        inputs.load([torch.ones(4, 3), torch.arange(2)])
    with pytest.raises(ValueError, match="argument 1 must be.*int64.*got.*float32"):
        inputs.load([torch.ones(2, 3), torch.zeros(2)])
    with pytest.raises(ValueError, match="captured with 2 tensor arguments, got 1"):
        inputs.load([torch.ones(2, 3)])
    with pytest.raises(TypeError, match="argument 1 must be a torch.Tensor"):
        _StaticInputs("GraphedForward", [torch.zeros(1), 3.0], "cpu")


def test_argument_errors_name_the_argument():
    model = tiny_model()
    adam = torch.optim.Adam(model.parameters())
    loss = heatmap_loss(resolve())
    with pytest.raises(ValueError, match="amp_dtype.*fp16.*GradScaler"):
        GraphedTrainStep(model, adam, loss, amp_dtype=torch.float16)
    with pytest.raises(ValueError, match="optimizer: SGD has no capturable mode"):
        GraphedTrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), loss)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        GraphedTrainStep(model, adam, "mse")
    with pytest.raises(ValueError, match="warmup must be an int >= 1"):
        GraphedTrainStep(model, adam, loss, warmup=0)
    with pytest.raises(ValueError, match="model: CUDA graphs need all parameters on one CUDA device"):
        GraphedTrainStep(model, adam, loss)
    with pytest.raises(ValueError, match="model: CUDA graphs need"):
        GraphedForward(model)
    with pytest.raises(ValueError, match="amp_dtype must be None"):
        GraphedForward(model, amp_dtype=torch.float64)


def test_cumulative_batchnorm_is_refused_for_training_capture(monkeypatch):
    monkeypatch.setattr("hgfast.graphs._device_of", lambda model: torch.device("cpu"))
    model = tiny_model()
    model.stem.bn.momentum = None
    with pytest.raises(ValueError, match=r"BatchNorm\(momentum=None\).*stem.bn; give it a momentum"):
        GraphedTrainStep(model, torch.optim.Adam(model.parameters()), heatmap_loss(resolve()))
    GraphedForward(model.eval())  # inference reads the running statistics: no sync
    model.stem.bn.track_running_stats = False  # batch statistics only: no factor, no sync
    GraphedTrainStep(model.train(), torch.optim.Adam(model.parameters()), heatmap_loss(resolve()))


def test_graphed_forward_captures_again_after_invalidate(monkeypatch):
    """A write through ``.data`` moves no version counter; ``hgfast.fused.invalidate(model)`` moves what the
    recapture check compares (checked on the CPU, without capturing)."""
    monkeypatch.setattr("hgfast.graphs._device_of", lambda model: torch.device("cpu"))
    model = tiny_model()
    forward = GraphedForward(model)
    before = forward._versions_now()
    model.heads[0].heatmap.weight.data.mul_(2.0)
    assert forward._versions_now() == before
    invalidate(model)
    assert forward._versions_now() != before


def test_training_config_rejects_cuda_graphs_where_they_cannot_run(tmp_path):
    with pytest.raises(ConfigError, match="'cuda_graphs' needs amp 'bf16' or 'none'"):
        resolve(overrides=["cuda_graphs=true", "amp=fp16"])
    from hgfast.train.loop import train

    cfg = resolve(overrides=["cuda_graphs=true", "device=cpu"], workdir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="'cuda_graphs' needs a CUDA device, got cpu"):
        train(cfg)


def test_optimizer_state_of_a_graphed_run_resumes_eagerly():
    """What GraphedTrainStep leaves in the optimiser (capturable groups, tensor lr) and so in its checkpoints."""
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    eager_step(model, optimizer, *batch(0))
    saved = optimizer.state_dict()
    for group in saved["param_groups"]:
        group["capturable"], group["lr"] = True, torch.tensor(1e-3)
    resumed = torch.optim.Adam(model.parameters(), lr=1e-3)
    resumed.load_state_dict(saved)
    release_capturable(resumed)
    assert all(g["capturable"] is False and g["lr"] == pytest.approx(1e-3) and isinstance(g["lr"], float)
               for g in resumed.param_groups)
    eager_step(model, resumed, *batch(1))  # capturable=True on CPU parameters would raise here
    assert all(s["step"].item() == 2 for s in resumed.state.values())


@pytest.mark.triton
def test_fused_training_forward_and_loss_have_no_host_sync():
    """A CUDA graph cannot capture a host sync; torch.compile(fullgraph=True) raises at the same places (a
    ``.item()``, a data-dependent branch), so a full graph on the CPU is the capture-readiness check here."""
    pytest.importorskip("triton")
    from hgfast.kernels.common import interpreter_tiles

    torch._dynamo.reset()
    model = tiny_model(fused=True, nfeat=8)  # the interpreter's time grows with the maps: keep them small
    loss_fn = heatmap_loss(resolve())
    x, kp, w = batch(0, size=16)

    def forward_loss(x, kp, w):
        return loss_fn(model(x), kp, w)

    with force_triton_on_cpu(), interpreter_tiles(64):  # wide tiles: fewer programs for the interpreter
        expected = forward_loss(x, kp, w)
        # AOTAutograd traces the backward with the forward (the parameters require grad), so this covers both.
        loss = torch.compile(forward_loss, backend="aot_eager", fullgraph=True)(x, kp, w)
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        torch._dynamo.reset()

        def checked(x, kp, w):  # the default keypoint check syncs the host: the same check must fail on it
            return heatmap_mse_loss(model(x).float(), kp, weights=w)

        with pytest.raises(Exception, match="item|Unsupported|graph break"):
            torch.compile(checked, backend="aot_eager", fullgraph=True)(x, kp, w)
    torch._dynamo.reset()


def _cuda_twins(fused, name):
    """A model and its eager twin; the twin's optimiser is capturable with an fp32 CUDA-tensor LR, as
    GraphedTrainStep makes the model's (a float LR and bias corrections in doubles differ in the last bit, which
    Adam and RMSprop blow up into lr-sized updates of biases whose true gradient is 0: those before a train BN)."""
    model = tiny_model(fused).cuda().to(memory_format=torch.channels_last)
    twin = copy.deepcopy(model)
    twin_optimizer = OPTIMIZERS[name](twin.parameters())
    for group in twin_optimizer.param_groups:
        group["capturable"] = True
        group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device="cuda")
    return model, twin, OPTIMIZERS[name](model.parameters()), twin_optimizer


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_graphed_training_matches_eager(fused, name, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    model, twin, optimizer, twin_optimizer = _cuda_twins(fused, name)
    step = GraphedTrainStep(model, optimizer, heatmap_loss(resolve()))

    def assert_same_eval_output():  # replays bump no version counter: the inference memo must still be fresh
        model.eval(), twin.eval()
        x = batch(9, "cuda")[0]
        with torch.no_grad():
            torch.testing.assert_close(model(x), twin(x), rtol=1e-3, atol=1e-4)
        model.train(), twin.train()

    assert_same_eval_output()  # fills the memo with the initial weights
    for i in range(5):
        if i == 3:  # an LR schedule assigns floats between steps (the twin's tensor takes the same value)
            for group, twin_group in zip(optimizer.param_groups, twin_optimizer.param_groups):
                group["lr"] = 1e-4
                twin_group["lr"].fill_(1e-4)
        x, kp, w = batch(i, "cuda")
        loss = step(x.to(memory_format=torch.channels_last), kp, w)
        expected = eager_step(twin, twin_optimizer, x.to(memory_format=torch.channels_last), kp, w)
        torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)
        if i == 1:
            assert_same_eval_output()
    assert_same_state(model, twin, rtol=1e-3, atol=1e-5)
    assert_same_eval_output()
    with pytest.raises(ValueError, match=r"argument 0 must be \(2, 3, 32, 32\)"):
        step(torch.rand(4, 3, 32, 32, device="cuda"), kp, w)


@pytest.mark.gpu
def test_graphed_bf16_training_step_runs_and_learns():
    model, _, optimizer, _ = _cuda_twins(True, "adam")
    step = GraphedTrainStep(model, optimizer, heatmap_loss(resolve()), amp_dtype=torch.bfloat16)
    x, kp, w = batch(0, "cuda")
    losses = [step(x, kp, w).item() for _ in range(30)]
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0]


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
def test_graphed_forward_matches_eager_and_follows_weight_changes(fused):
    model = tiny_model(fused).cuda().eval()
    forward = GraphedForward(model)
    for seed in (0, 1):
        x = batch(seed, "cuda")[0]
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(forward(x), expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        model.heads[0].heatmap.weight.mul_(2.0)  # in place: the next call captures again
        expected = model(x)
    torch.testing.assert_close(forward(x), expected, rtol=1e-5, atol=1e-6)
    model.hourglasses[0].up1.conv2.weight.data.mul_(0.5)  # no version bump: the memo and the graph must be told
    invalidate(model)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(forward(x), expected, rtol=1e-5, atol=1e-6)
