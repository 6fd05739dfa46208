"""The training loop: intermediate supervision on all stacks, targets on the device, AMP, DDP, checkpoints.

Per step: the loader yields uint8 crops and crop-pixel keypoints; ``hgfast.ops.heatmap_mse_loss`` renders the
Gaussian targets on the device and sums the per-stack MSE. Every ``val_every`` steps (and at the end) the main
process evaluates PCK (COCO data: and OKS AP) on the validation split and keeps ``best.safetensors``, by
``val_metric``; every ``vis_every`` steps (and at
the end) it draws predictions on the first 16 validation images (``vis/step_XXXXXXX.jpg``). With ``cuda_graphs``
the forward, loss, backward and optimiser step replay from one CUDA graph (``hgfast.graphs.GraphedTrainStep``).

The work dir holds ``config.yaml`` (resolved), ``train.log``, ``metrics.csv``, ``last.state.pt`` (resumable),
``last.safetensors``, ``best.safetensors``, ``val/`` and ``vis/``. Ctrl-C finishes the current step, writes the
state and raises ``KeyboardInterrupt`` (a second Ctrl-C stops at once, but never inside a step's parameter update);
``train(cfg, resume=workdir)`` continues bit-identically (on CPU), logged losses included. An error mid-run (an image
that cannot be read, a failing callback; not a diverged loss) likewise writes the state of the last whole step
before it propagates, so nothing trained since the last checkpoint is lost.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..checkpoint import atomic_path, non_finite_tensors
from ..data.build import build_dataset, build_detections
from ..data.crop import crop_size
from ..data.mpii import MPII
from ..data.skeleton import Skeleton
from ..eval.evaluate import evaluate, predict_dataset
from ..graphs import GraphedTrainStep, release_capturable
from ..models import StackedHourglass
from ..models.stacked_hourglass import load_into
from ..ops import _checks, heatmap_mse_loss, targets_on_map
from ..predict import AMP_DTYPES, INFERENCE_KEYS, to_input
from ..visualize import save_predictions_picture
from . import distributed
from .config import Config, resolve, save_yaml, to_dict
from .pretrained import apply_pretrained, read_pretrained
from .state import STATE_FILE, check_resumable, load_state, save_state, set_rng_state, state_path

log = logging.getLogger("hgfast.train")


def build_model(cfg: Config, njoints: int = 16) -> StackedHourglass:
    """The configured model, ``fused=model.fused`` (the Triton path runs where ``model.fused_active``)."""
    return StackedHourglass(nstack=cfg.model.nstack, nfeat=cfg.model.nfeat, njoints=njoints, depth=cfg.model.depth,
                            stem_channels=cfg.model.stem_channels, fused=cfg.model.fused)


def build_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "rmsprop":  # the paper's Lua trainer: alpha 0.99, eps 1e-8, no momentum
        return torch.optim.RMSprop(params, lr=o.lr, alpha=0.99, eps=1e-8, weight_decay=o.weight_decay)
    return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)


def learning_rate(cfg: Config, step: int) -> float:
    """LR for ``step`` (0-based): linear warm-up, then the step / cosine / constant schedule."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "step":
        return o.lr * o.gamma ** sum(step >= m for m in o.milestones)
    if o.schedule == "cosine":
        t = (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps)
        return o.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return o.lr


_SCHEDULE_KEYS = ("steps", "optim.lr", "optim.schedule", "optim.milestones", "optim.gamma", "optim.warmup_steps")


def schedule_change(saved: dict, cfg: Config, step: int) -> str | None:
    """A note for a run resumed at ``step`` whose LR there differs from the saved run's schedule (``saved``: the
    state's config dict), naming the keys that changed (more ``steps`` re-stretch a cosine schedule); None where
    the LR is the same or the saved schedule cannot be read back."""
    try:
        before = resolve(path={"optim": saved.get("optim", {}), "steps": saved.get("steps", cfg.steps)})
    except ValueError:
        return None
    old, new = learning_rate(before, step), learning_rate(cfg, step)
    if math.isclose(old, new, rel_tol=1e-12):
        return None
    values = [(key, *(_get(c, key) for c in (before, cfg))) for key in _SCHEDULE_KEYS]
    changed = ", ".join(f"{key} {a} -> {b}" for key, a, b in values if a != b)
    return (f"resumed with another learning-rate schedule ({changed}): step {step} trains at lr {new:.3g}, where "
            f"the saved run's schedule had {old:.3g}")


def _get(cfg: Config, key: str):
    """The value of a dotted config key."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def heatmap_loss(cfg: Config) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss(pred, keypoints, weights)``: the configured intermediate-supervision loss, without the keypoint
    check's host sync (the loop checks the keypoints on the CPU batch). bf16/fp16 predictions are read as they
    are (the loss accumulates in fp32), not copied to fp32 first."""
    def loss(pred, keypoints, weights):
        return heatmap_mse_loss(pred, keypoints, weights=weights, sigma=cfg.data.sigma,
                                encoding=cfg.data.encoding, check_keypoints=False)
    return loss


def device_batch(batch: dict, device: torch.device, input_size, weight_key: str,
                 channels_last: bool, input_norm: str = "none",
                 off_map: tuple[float, str] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A loader batch -> ``(images, keypoints in heatmap pixels, loss weights)`` on ``device``; ``input_size``: the
    crops' S or (height, width), the heatmaps a quarter of it; ``off_map``
    ``(sigma, encoding)`` of the targets: joints whose target has no pixel on the map get weight 0
    (``hgfast.ops.targets_on_map``).

    The keypoints are checked for NaN/Inf here, on the CPU batch (the loss then skips its check, which would sync
    with the device). The copies are asynchronous: a blocking one would wait for the previous step's kernels, so
    the host could not queue this step while the GPU still runs that one."""
    _checks.visible(None, _checks.keypoints(batch["keypoints"]))
    x = to_input(batch["image"], device, channels_last, input_norm)
    heatmap_size = tuple(side // 4 for side in crop_size(input_size))
    kp = batch["keypoints"].to(device, non_blocking=True) * 0.25
    weights = batch[weight_key]
    if off_map is not None:  # on the CPU batch (no device sync), pinned again for the asynchronous copy
        weights = weights * targets_on_map(batch["keypoints"] * 0.25, heatmap_size, *off_map)
        weights = weights.pin_memory() if device.type == "cuda" else weights
    return x, kp, weights.to(device, non_blocking=True)


def _check_runtime(cfg: Config, device: torch.device, info: distributed.Dist) -> None:
    if cfg.cuda_graphs and device.type != "cuda":
        raise ValueError(f"config key 'cuda_graphs' needs a CUDA device, got {device}")
    if cfg.cuda_graphs and info.enabled:
        raise ValueError("config key 'cuda_graphs' runs in one process; train under DDP without it")


class _StopFlag:
    """SIGINT or SIGTERM (a scheduler's preemption, ``docker stop``) sets a flag (the loop stops at the next step
    boundary); a second one raises at once, or, inside ``critical()``, when it ends: the state the interrupt
    handler saves is always that of a whole step, and its writing is not cut short."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.set, self._old, self._critical, self._deferred, self._stopping = False, {}, False, False, False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if not self.set:
            self.set = True
        elif self._critical or self._stopping:  # the interrupt's state is being written, or about to be
            self._deferred = True
        else:
            self.interrupt()

    def interrupt(self):
        """Raise KeyboardInterrupt; signals from then on wait (the interrupt's state is written next)."""
        self._stopping = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self):
        self._critical = True
        try:
            yield
        finally:
            self._critical = False
        if self._deferred:
            self.interrupt()

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            if handler is not None:  # None: a handler not installed from Python, which cannot be put back
                signal.signal(sig, handler)


class _WholeStepBuffers:
    """The model's buffers (BN running statistics and counters) as they were before the step in progress: a second
    Ctrl-C inside a step's forward has updated them already, and the state written then must be that of whole
    steps, so that the resumed run is the uninterrupted one."""

    def __init__(self, model: nn.Module):
        self.live = list(model.buffers())
        self.before = [b.clone() for b in self.live]
        self.in_step = False

    def start(self) -> None:
        if self.live:
            torch._foreach_copy_(self.before, self.live)
        self.in_step = True

    def undo(self) -> None:
        """Put back the buffers of the last whole step if a step is in progress."""
        if self.in_step and self.live:
            torch._foreach_copy_(self.live, self.before)
        self.in_step = False


def _write_interrupted(stop: _StopFlag, whole_step: _WholeStepBuffers | None, checkpoint: Callable,
                       message: str, main: bool) -> None:
    """Log ``message`` (on the ``main`` process, the one that writes) and write the interrupt's checkpoint: of the
    last whole step, not cut short by a signal."""
    with contextlib.suppress(KeyboardInterrupt), stop.critical():  # a signal meanwhile: the caller raises anyway
        if main:
            log.warning(message)
        if whole_step is not None:
            whole_step.undo()
        checkpoint()


def _save_before_error(stop: _StopFlag, whole_step: _WholeStepBuffers | None, checkpoint: Callable, step: int,
                       error: Exception, main: bool, loss_sum: torch.Tensor) -> None:
    """Write the state of the last whole step before ``error`` (bad data found mid-run, a failing callback, ...)
    propagates, so ``--resume`` goes on from there once it is fixed; not where the loss since the last log step
    (``loss_sum``; the earlier ones were checked) is not finite: a diverged model does not replace the last
    checkpoint. A failure to write is logged, not raised over ``error``."""
    try:
        if not math.isfinite(loss_sum.item()):
            log.error("step %d: %s: %s; the loss had diverged, so no checkpoint is written", step,
                      type(error).__name__, error)
            return
        _write_interrupted(stop, whole_step, checkpoint, f"step {step}: {type(error).__name__}: {error}; writing "
                           f"the checkpoint (fix the cause, then --resume)", main)
    except FloatingPointError as diverged:  # checkpoint() found the weights no longer finite
        log.error("%s", diverged)
    except Exception as save_error:  # e.g. the disk that is full
        log.error("could not write the checkpoint at step %d: %s", step, save_error)


def _remove_stale_temporaries(workdir: Path) -> list[str]:
    """Remove what writes killed midway (``kill -9``) left of ``atomic_path``'s temporaries of the run's files."""
    stale = [p for name in RUN_FILES for p in workdir.glob(f".{name}.*.tmp")]
    stale += [p for folder, pattern in RUN_FOLDERS.items() for p in (workdir / folder).glob(f".{pattern}.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return [str(p.relative_to(workdir)) for p in stale]


def _stop_requested(stop: _StopFlag, info: distributed.Dist, device: torch.device, boundary: bool) -> bool:
    """Single process: the flag. DDP: agreed by all ranks (all-reduce, at log boundaries only), so every rank
    stops after the same step."""
    if not info.enabled:
        return stop.set
    if not boundary:
        return False
    flag = torch.tensor([float(stop.set)], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _close_logging() -> None:
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def _setup_logging(workdir: Path, is_main: bool) -> None:
    log.setLevel(logging.INFO)
    _close_logging()
    if is_main:
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
        for handler in (logging.FileHandler(workdir / "train.log"), logging.StreamHandler(sys.stderr)):
            handler.setFormatter(fmt)
            log.addHandler(handler)
    log.propagate = False


class _Metrics:
    """``metrics.csv``: on opening, rows after ``step`` (the starting step: 0 for a fresh run, the checkpoint's
    step on resume, so rows a crashed run wrote after its last checkpoint) are dropped; then rows are appended."""

    COLUMNS = ["step", "epoch", "lr", "loss", "images_per_s", "elapsed_s", "val_pck", "val_pck_threshold", "val_ap"]

    def __init__(self, path: Path, step: int):
        self.path = path
        rows = []
        if path.exists():
            with open(path, newline="") as f:
                rows = [r + [""] * (len(self.COLUMNS) - len(r))  # an older run's rows lack the newer columns
                        for r in list(csv.reader(f))[1:] if r and int(r[0]) <= step]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([self.COLUMNS] + rows)

    def write(self, **row) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.COLUMNS])


def _predict_kwargs(cfg: Config) -> dict:
    return dict(flip=cfg.val_flip, channels_last=cfg.channels_last, autocast_dtype=AMP_DTYPES[cfg.amp],
                input_norm=cfg.data.input_norm)


def validate(model: nn.Module, cfg: Config, dataset, step: int, workdir: Path, picture: bool) -> dict:
    """Evaluate on ``dataset``; log the table, write ``val/step_XXXXXXX.json`` and, if ``picture``,
    ``vis/step_XXXXXXX.jpg``; return the table (``hgfast.eval.evaluate``)."""
    from ..eval.pck import format_table

    table, preds = evaluate(model, dataset, cfg.thresholds(), batch_size=max(cfg.batch_size, 32),
                            **_predict_kwargs(cfg))
    log.info("step %d validation (%d samples, flip=%s):\n%s", step, table["samples"], cfg.val_flip,
             format_table(table))
    with atomic_path(workdir / "val" / f"step_{step:07d}.json") as tmp:
        Path(tmp).write_text(json.dumps(table, indent=1))
    if picture:
        save_predictions_picture(dataset, preds, workdir / "vis" / f"step_{step:07d}.jpg")
    return table


def _check_val_metric(cfg: Config, val_set) -> None:
    """``val_metric: ap`` needs what OKS AP needs (pycocotools, the skeleton's sigmas): refused before training."""
    if cfg.val_metric != "ap":
        return
    import importlib.util

    from ..eval.oks import default_sigmas

    if importlib.util.find_spec("pycocotools") is None:
        raise ValueError("config key 'val_metric' = 'ap' needs pycocotools: pip install 'hgfast[coco]'")
    if default_sigmas(val_set.skeleton.names, val_set.oks_sigmas) is None:
        raise ValueError("config key 'val_metric' = 'ap' needs per-joint OKS sigmas for a skeleton other than "
                         "COCO's 17 joints (config key data.oks_sigmas)")


def _check_labels(train_set, val_set) -> None:
    """MPII-style files without labels (a test split) cannot train or validate: refused before training."""
    if isinstance(train_set, MPII) and not train_set.labelled.any():
        raise ValueError(f"the training annotations {train_set.annotations} have no annotated joint (an unlabelled "
                         f"file, like MPII's test split): nothing to train on")
    why = val_set.no_ground_truth() if isinstance(val_set, MPII) else None
    if why:
        raise ValueError(f"validation: {why}; validate on a labelled file (data.val_annotations), and predict this "
                         f"one with hgfast eval --results preds.h5")


def draw_predictions(model: nn.Module, cfg: Config, dataset, step: int, workdir: Path) -> None:
    """``vis/step_XXXXXXX.jpg`` on a step without validation: the model runs on the 16 pictured images only."""
    subset = Subset(dataset, range(min(16, len(dataset))))
    subset.flip_permutation = dataset.flip_permutation
    preds = predict_dataset(model, subset, batch_size=16, **_predict_kwargs(cfg))
    save_predictions_picture(dataset, preds, workdir / "vis" / f"step_{step:07d}.jpg")


# What a run writes in its work dir (and ``hgfast eval --workdir``): files, and folders of step files.
RUN_FILES = ("config.yaml", "train.log", "metrics.csv", STATE_FILE, "last.safetensors", "best.safetensors",
             "eval.json", "eval.jpg", "eval_detections.json", "eval_detections.jpg")
RUN_FOLDERS = {"val": "step_*.json", "vis": "step_*.jpg"}


# The files that show a work dir holds a run's results (config.yaml may be the user's own; a log and metrics alone
# are what a run that failed before its first checkpoint leaves, which its rerun replaces).
_RUN_MARKS = (STATE_FILE, "best.safetensors", "last.safetensors")


def _run_outputs(workdir: Path) -> list[str]:
    """The ``_RUN_MARKS`` and step folders of ``RUN_FOLDERS`` in ``workdir`` that hold files."""
    found = [name for name in _RUN_MARKS if (workdir / name).is_file()]
    return found + [f"{folder}/" for folder, pattern in RUN_FOLDERS.items() if any((workdir / folder).glob(pattern))]


def _clear_run(workdir: Path) -> list[str]:
    """Remove an earlier run's outputs from ``workdir``: only ``RUN_FILES`` and the step files in ``RUN_FOLDERS``
    (the folder too if that empties it); return what was removed, in words."""
    removed = [name for name in RUN_FILES if (workdir / name).is_file()]
    for name in removed:
        (workdir / name).unlink()
    for folder, pattern in RUN_FOLDERS.items():
        files = list((workdir / folder).glob(pattern))
        for path in files:
            path.unlink()
        if files:
            removed.append(f"{folder}/{pattern} ({len(files)})")
        with contextlib.suppress(OSError):
            (workdir / folder).rmdir()
    return removed


def train(cfg: Config, resume: str | Path | None = None,
          callbacks: list[Callable[[int, dict], None]] = (), overwrite: bool = False) -> dict:
    """Train with ``cfg``; resume from a work dir or state file if ``resume`` is given.

    A work dir holding another run's ``last.state.pt`` (an earlier run, for a fresh run; for a resumed one, a run in
    another folder than the resumed state's) is refused unless ``overwrite``: then the earlier run's outputs
    (``RUN_FILES``, ``RUN_FOLDERS``; nothing else) are removed first. A resumed run's config must keep the keys
    ``check_resumable`` names (ValueError otherwise); nothing is written before that check and the state load.

    ``callbacks(step, info)`` run after every step on every process (``info``: loss, lr). Returns a summary
    dict (steps, best validation ``val_metric`` (the main process's, on every process), paths). Raises
    ``KeyboardInterrupt`` after writing the state on Ctrl-C; other errors propagate after writing it too (module
    docstring).
    """
    try:
        return _train(cfg, resume, callbacks, overwrite)
    finally:
        _close_logging()


def _carry_best(source: Path, workdir: Path, best: float) -> float | None:
    """A run resumed into another folder keeps the resumed run's best score only with its weights: ``source``'s
    ``best.safetensors`` is copied to ``workdir`` (atomically) and ``best`` returned, else None (a missing file:
    the new run's first validation writes its own)."""
    import shutil

    weights = source / "best.safetensors"
    if not weights.is_file():
        log.warning("%s has no best.safetensors: its best score %.5f is dropped", source, best)
        return None
    with atomic_path(workdir / "best.safetensors") as tmp:
        shutil.copyfile(weights, tmp)
    log.info("best.safetensors (%.5f) copied from %s", best, source)
    return best


def _train(cfg: Config, resume, callbacks, overwrite: bool) -> dict:
    workdir = Path(cfg.workdir)
    existing = next((p for p in (workdir, *workdir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"workdir {workdir}: {existing} is a file, not a folder (choose another --workdir)")
    if cfg.optim.warmup_steps > cfg.steps:
        raise ValueError(f"config key 'optim.warmup_steps' ({cfg.optim.warmup_steps}) must be <= 'steps' "
                         f"({cfg.steps}): the run would end before its LR reaches optim.lr (0: no warm-up)")
    state = None if resume is None else load_state(resume)
    if state is not None:
        check_resumable(state.get("config") or {}, to_dict(cfg))
        if cfg.steps < int(state["step"]):
            raise ValueError(f"cannot resume with config key 'steps' = {cfg.steps}: the saved run is at step "
                             f"{int(state['step'])} (give steps >= that)")
    train_set = build_dataset(cfg.data, "train")
    val_set = (build_detections(cfg.data, cfg.data.val_detections) if cfg.data.val_detections
               else build_dataset(cfg.data, "val"))
    skeleton = train_set.skeleton
    if val_set.skeleton.names != skeleton.names:
        raise ValueError(f"the validation set's joints {list(val_set.skeleton.names)} differ from the training "
                         f"set's {list(skeleton.names)}")
    _check_val_metric(cfg, val_set)
    _check_labels(train_set, val_set)
    pretrained = read_pretrained(cfg.model.init, cfg.model, cfg.data.input_norm) if cfg.model.init and \
        state is None else None
    saved = None if state is None or state.get("skeleton") is None else Skeleton.from_dict(state["skeleton"])
    if saved is not None and (saved.names, saved.flip_permutation) != (skeleton.names, skeleton.flip_permutation):
        raise ValueError(f"cannot resume: the data's joints {list(skeleton.names)} (flip permutation "
                         f"{skeleton.flip_permutation}) differ from the saved run's {list(saved.names)} (flip "
                         f"permutation {saved.flip_permutation}; see data.train_annotations, data.category_id, "
                         f"data.flip_pairs)")
    same_run = resume is not None and state_path(resume).parent.resolve() == workdir.resolve()
    if same_run and overwrite:
        raise ValueError(f"--overwrite starts afresh and --resume continues the run in {workdir}: give one")
    found = [] if same_run or overwrite else _run_outputs(workdir)
    if found:
        what = "an earlier run" if resume is None else f"another run than {state_path(resume)}"
        how = "continue it with --resume, or pass --overwrite to replace it" if STATE_FILE in found else \
            f"pass --overwrite to replace it ({STATE_FILE}, which --resume continues, is gone)"
        raise FileExistsError(f"{workdir} holds {what} ({', '.join(found)}): {how} (or choose another --workdir)")
    dist_info, device = distributed.setup(cfg.device)
    _check_runtime(cfg, device, dist_info)
    removed = []
    if dist_info.is_main:
        workdir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            removed = _clear_run(workdir)
    _setup_logging(workdir, dist_info.is_main)
    if removed:
        log.info("--overwrite: removed the earlier run's %s", ", ".join(removed))
    stale = _remove_stale_temporaries(workdir) if dist_info.is_main else []
    if stale:
        log.info("removed %s, left by writes that were killed", ", ".join(stale))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    model = build_model(cfg, skeleton.num_joints)
    if pretrained is not None:
        fresh = apply_pretrained(model, pretrained)
        log.info("weights from %s%s", cfg.model.init,
                 f"; {', '.join(fresh)} start fresh (another number of joints)" if fresh else "")
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    step, best, progress = 0, None, {}
    if state is not None:
        load_into(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        release_capturable(optimizer)
        for group in optimizer.param_groups:  # the state brings back the saved run's; --set may change it
            group["weight_decay"] = cfg.optim.weight_decay
        scaler.load_state_dict(state["scaler"])
        step, best, progress = int(state["step"]), state.get("best"), state.get("progress", {})
        set_rng_state(state["rng"])
        log.info("resumed from %s at step %d", resume, step)
        note = schedule_change(state.get("config") or {}, cfg, step)
        if note:
            log.warning(note)
    if dist_info.is_main:
        save_yaml(cfg, workdir / "config.yaml")
        if state is not None and not same_run and best is not None:
            best = _carry_best(state_path(resume).parent, workdir, best)
    net = model
    if dist_info.enabled:
        if cfg.sync_bn:
            if device.type != "cuda":
                raise ValueError("config key 'sync_bn' needs CUDA GPUs (SyncBatchNorm does not run on CPU)")
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    sampler = distributed.EpochSampler(train_set, dist_info.world_size, dist_info.rank, cfg.seed)
    steps_per_epoch = sampler.num_samples // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"the training set ({len(train_set)} samples over {dist_info.world_size} processes) is "
                         f"smaller than one batch ({cfg.batch_size})")
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.data.workers,
                        drop_last=True, pin_memory=device.type == "cuda")
    log.info("training %s (fused kernels %s) on %s (%d process(es)), %d train / %d val samples, step %d of %d",
             json.dumps(model.config), "on" if getattr(model, "fused_active", False) else "off", device,
             dist_info.world_size, len(train_set), len(val_set), step, cfg.steps)
    log.info("joints %s; flip pairs %s", ", ".join(skeleton.names),
             [(skeleton.names[i], skeleton.names[j]) for i, j in enumerate(skeleton.flip_permutation or ()) if i < j])
    for name, ds in (("train", train_set), ("val", val_set)):
        if any(getattr(ds, "skipped", {}).values()):
            log.info("%s set: people left out: %s", name, ds.skipped)
    if cfg.data.loss_weight == "visible" and getattr(train_set, "visible_is_annotated", False):
        log.warning("data.loss_weight=visible: %s does not tell visible from occluded joints (its 'visible' is the "
                    "annotated flag, as HRNet's and mmpose's MPII JSON): occluded joints are trained too",
                    train_set.annotations)

    metrics = _Metrics(workdir / "metrics.csv", step) if dist_info.is_main else None
    amp_dtype = AMP_DTYPES[cfg.amp]
    loss_fn = heatmap_loss(cfg)
    graphed = GraphedTrainStep(net, optimizer, loss_fn, amp_dtype) if cfg.cuda_graphs else None
    weight_key = "annotated" if cfg.data.loss_weight == "annotated" else "visible"
    off_map = (cfg.data.sigma, cfg.data.encoding) if cfg.data.drop_off_map else None
    inference = {k: getattr(cfg.data, k) for k in INFERENCE_KEYS}  # stored with the weights, for Predictor

    # Running sums of the log window, images seen, start time and time not spent training (validation,
    # checkpoints, pictures): in the state, so a resumed run logs the same.
    t0, seen = time.time() - progress.get("elapsed_s", 0.0), progress.get("seen", 0)
    paused = progress.get("paused_s", 0.0)
    # Where the sampler is: the epoch and the samples of it this process has taken; in the state as the samples
    # all processes took, so a run resumed with another batch size or number of processes goes on from there.
    if "epoch" in progress:
        epoch, start = progress["epoch"], progress["epoch_seen"] // dist_info.world_size
    else:  # a state saved before these were
        epoch, start = step // steps_per_epoch, (step % steps_per_epoch) * cfg.batch_size
    loss_acc, loss_n = torch.tensor(progress.get("loss_sum", 0.0), device=device), progress.get("loss_n", 0)
    # True from a validation step's update until its validation is done: an interrupt in between (a second Ctrl-C
    # in validate) leaves it to the resumed run, which starts after that step.
    validation_pending = progress.get("validation_pending", False)
    log_pending = progress.get("log_pending", False)  # likewise for a log step's metrics.csv row

    @contextlib.contextmanager
    def not_training():
        """Time spent in the block is left out of the logged images/s."""
        nonlocal paused
        began = time.time()
        try:
            yield
        finally:
            paused += time.time() - began

    saved_step = step  # the step of the state on disk (or the start)

    def checkpoint(final: bool = False) -> None:
        nonlocal saved_step
        diverged = non_finite_tensors(model.state_dict())  # on every process: their weights are the same
        if diverged:  # the last update overflowed, though its loss was finite: keep the last checkpoint
            raise FloatingPointError(f"step {step}: the weights are no longer finite (e.g. {diverged[:2]}); the "
                                     f"checkpoint of step {saved_step} is kept; try a lower optim.lr or amp=none")
        saved_step = step
        if dist_info.is_main:
            with not_training():
                save_state(workdir / STATE_FILE, model, optimizer, scaler, step, best, to_dict(cfg),
                           {"loss_sum": loss_acc.item(), "loss_n": loss_n, "seen": seen,
                            "elapsed_s": time.time() - t0, "paused_s": paused, "epoch": epoch,
                            "epoch_seen": start * dist_info.world_size, "validation_pending": validation_pending,
                            "log_pending": log_pending},
                           skeleton.to_dict())
                model.save(workdir / "last.safetensors", skeleton, inference)
            log.info("checkpoint at step %d%s", step, " (final)" if final else "")

    def run_validation() -> bool:
        """Validate; True (on the main process) when ``best`` improved and ``best.safetensors`` was written."""
        nonlocal best, validation_pending
        improved = False
        if dist_info.is_main:
            picture = step == cfg.steps or (cfg.vis_every and step % cfg.vis_every == 0)
            with not_training():
                table = validate(model, cfg, val_set, step, workdir, bool(picture))
            pck = table["pck"][f"{cfg.thresholds()[0]:g}"]["mean_weighted"] if "pck" in table else None
            ap = table.get("oks", {}).get("AP")
            metrics.write(step=step, val_pck="" if pck is None else f"{pck:.5f}",
                          val_pck_threshold="" if pck is None else cfg.thresholds()[0],
                          val_ap="" if ap is None else f"{ap:.5f}")
            value = ap if cfg.val_metric == "ap" else pck
            if value is None:
                log.warning("step %d: no validation %s to choose best.safetensors by", step, cfg.val_metric.upper())
            elif best is None or value > best:
                with stop.critical():  # the state's best matches best.safetensors
                    best, improved = value, True
                    model.save(workdir / "best.safetensors", skeleton, inference)
        dist_info.barrier()
        validation_pending = False
        return improved

    def write_log_row(mean_loss: float, lr: float) -> None:
        """The log line and metrics.csv row of the log window ending at ``step``."""
        nonlocal log_pending
        rate = seen / max(time.time() - t0 - paused, 1e-9)
        log.info("step %d epoch %d lr %.3g loss %.5f %.1f img/s", step, epoch, lr, mean_loss, rate)
        bar.set_postfix(loss=f"{mean_loss:.3g}", lr=f"{lr:.3g}")
        if metrics:
            metrics.write(step=step, epoch=epoch, lr=f"{lr:.6g}", loss=f"{mean_loss:.6g}",
                          images_per_s=f"{rate:.1f}", elapsed_s=f"{time.time() - t0:.1f}")
        log_pending = False

    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, disable=not (dist_info.is_main and sys.stderr.isatty()),
               dynamic_ncols=True)
    net.train()
    completed, updating = False, False
    whole_step = _WholeStepBuffers(model) if graphed is None else None  # a graph replays inside critical()
    with _StopFlag() as stop:
        try:
            if log_pending:  # the interrupt came between a log step's update and its row
                write_log_row(distributed.mean(loss_acc, dist_info) / loss_n, learning_rate(cfg, step - 1))
            if validation_pending:
                log.info("validating step %d, whose validation the run's stop cut short", step)
                run_validation()
                checkpoint(final=step == cfg.steps)
            while step < cfg.steps:
                if start + cfg.batch_size > sampler.num_samples:  # what is left of the epoch is not a batch
                    epoch, start = epoch + 1, 0
                sampler.set_position(epoch, start)
                for batch in loader:
                    lr = learning_rate(cfg, step)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    x, kp, weights = device_batch(batch, device, cfg.data.input_size, weight_key,
                                                  cfg.channels_last, cfg.data.input_norm, off_map)
                    if graphed is None:
                        whole_step.start()
                        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                            pred = net(x)
                        loss = loss_fn(pred, kp, weights)
                        optimizer.zero_grad(set_to_none=True)
                        scaler.scale(loss).backward()
                    with stop.critical():  # from the update through the step's counters
                        updating = True  # an error from here to the counters leaves no whole step to save
                        if graphed is not None:
                            loss = graphed(x, kp, weights).clone()  # the graph's output is overwritten next step
                        else:
                            scaler.step(optimizer)
                            scaler.update()
                        step += 1
                        start += cfg.batch_size
                        if whole_step is not None:
                            whole_step.in_step = False
                        if (step - 1) % cfg.log_every == 0:  # a log window starts (not reset at the log line,
                            loss_acc.zero_()                 # so a state saved at a window's end resumes right)
                            loss_n = 0
                        seen += x.shape[0] * dist_info.world_size
                        loss_acc += loss.detach()
                        loss_n += 1
                        last = step == cfg.steps
                        validation_pending = last or step % cfg.val_every == 0
                        log_pending = last or step % cfg.log_every == 0
                        updating = False
                    bar.update(1)
                    for cb in callbacks:
                        cb(step, {"loss": loss.detach(), "lr": lr})
                    if last or any(step % n == 0 for n in (cfg.log_every, cfg.val_every, cfg.ckpt_every)):
                        mean_loss = distributed.mean(loss_acc, dist_info) / loss_n  # a host sync per boundary
                        if not math.isfinite(mean_loss):
                            raise FloatingPointError(f"training loss is {mean_loss} in steps {step - loss_n + 1}-"
                                                     f"{step}; try a lower optim.lr or amp=none")
                    if log_pending:
                        write_log_row(mean_loss, lr)
                    validating = validation_pending
                    # every process checkpoints where the main one does (its finite-weights check raises on all)
                    improved = validating and distributed.from_main(run_validation(), dist_info)
                    if dist_info.is_main and not validating and cfg.vis_every and step % cfg.vis_every == 0:
                        with not_training():
                            draw_predictions(model, cfg, val_set, step, workdir)
                    if last or step % cfg.ckpt_every == 0 or improved:  # the state's best matches best.safetensors
                        checkpoint(final=last)
                    if _stop_requested(stop, dist_info, device, last or step % cfg.log_every == 0):
                        stop.interrupt()
                    if step >= cfg.steps:
                        break
            best = distributed.from_main(best, dist_info)  # only the main process validates
            completed = True
        except KeyboardInterrupt:
            _write_interrupted(stop, whole_step, checkpoint, f"interrupted at step {step}; writing the checkpoint",
                               dist_info.is_main)
            raise
        except Exception as exc:
            if stop.set:  # e.g. loader workers killed by the same Ctrl-C
                _write_interrupted(stop, whole_step, checkpoint,
                                   f"interrupted at step {step} ({exc}); writing the checkpoint", dist_info.is_main)
                raise KeyboardInterrupt from exc
            if step != saved_step and not updating and not isinstance(exc, FloatingPointError):
                _save_before_error(stop, whole_step, checkpoint, step, exc, dist_info.is_main, loss_acc)
            raise
        finally:
            bar.close()
            net = graphed = None  # DDP's reducer holds the process group: free it before the group is destroyed
            distributed.cleanup(dist_info, synchronize=completed)
    return {"steps": step, "best": best, "best_metric": cfg.val_metric, "workdir": str(workdir),
            "best_checkpoint": str(workdir / "best.safetensors")}
