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
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..checkpoint import non_finite_tensors
from ..data.build import build_dataset, build_detections
from ..data.crop import crop_size
from ..data.skeleton import Skeleton
from ..graphs import GraphedTrainStep, release_capturable
from ..models import StackedHourglass
from ..models.stacked_hourglass import load_into
from ..ops import _checks, heatmap_mse_loss, targets_on_map
from ..predict import AMP_DTYPES, INFERENCE_KEYS, to_input
from . import distributed
from .config import Config, save_yaml, to_dict
from .interrupt import StopFlag, WholeStepBuffers, save_before_error, stop_requested, write_interrupted
from .pretrained import apply_pretrained, read_pretrained
from .rundir import (Metrics, carry_best, check_run_paths, clear_run, close_logging, remove_stale_temporaries,
                     run_outputs, setup_logging, workdir_lock)
from .schedule import build_optimizer, learning_rate, schedule_change
from .state import STATE_FILE, check_resumable, load_state, save_state, set_rng_state, state_path
from .validation import check_labels, check_val_metric, draw_predictions, validate

log = logging.getLogger("hgfast.train")


def build_model(cfg: Config, njoints: int = 16) -> StackedHourglass:
    """The configured model, ``fused=model.fused`` (the Triton path runs where ``model.fused_active``)."""
    return StackedHourglass(nstack=cfg.model.nstack, nfeat=cfg.model.nfeat, njoints=njoints, depth=cfg.model.depth,
                            stem_channels=cfg.model.stem_channels, fused=cfg.model.fused)


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
    if cfg.sync_bn and info.enabled and device.type != "cuda":
        raise ValueError("config key 'sync_bn' needs CUDA GPUs (SyncBatchNorm does not run on CPU)")


def train(cfg: Config, resume: str | Path | None = None,
          callbacks: list[Callable[[int, dict], None]] = (), overwrite: bool = False) -> dict:
    """Train with ``cfg``; resume from a work dir or state file if ``resume`` is given.

    A work dir holding another run's ``last.state.pt`` (an earlier run, for a fresh run; for a resumed one, a run in
    another folder than the resumed state's) is refused unless ``overwrite``: then the earlier run's outputs
    (``rundir.RUN_FILES``, ``rundir.RUN_FOLDERS``; nothing else) are removed first. A resumed run's config must
    keep the keys ``check_resumable`` names (ValueError otherwise); nothing is written before that check and the
    state load.

    ``callbacks(step, info)`` run after every step on every process (``info``: loss, lr). Returns a summary
    dict (steps, best validation ``val_metric`` (the main process's, on every process), paths). Raises
    ``KeyboardInterrupt`` after writing the state on Ctrl-C; other errors propagate after writing it too (module
    docstring).
    """
    try:
        with contextlib.ExitStack() as lock:  # the work dir's lock, held until the run ends
            return _train(cfg, resume, callbacks, overwrite, lock)
    finally:
        close_logging()


def _train(cfg: Config, resume, callbacks, overwrite: bool, lock: contextlib.ExitStack) -> dict:
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
    check_val_metric(cfg, val_set)
    check_labels(train_set, val_set)
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
    found = [] if same_run or overwrite else run_outputs(workdir)
    if found:
        what = "an earlier run" if resume is None else f"another run than {state_path(resume)}"
        how = "continue it with --resume, or pass --overwrite to replace it" if STATE_FILE in found else \
            f"pass --overwrite to replace it ({STATE_FILE}, which --resume continues, is gone)"
        raise FileExistsError(f"{workdir} holds {what} ({', '.join(found)}): {how} (or choose another --workdir)")
    dist_info, device = distributed.setup(cfg.device)
    _check_runtime(cfg, device, dist_info)
    sampler = distributed.EpochSampler(train_set, dist_info.world_size, dist_info.rank, cfg.seed)
    steps_per_epoch = sampler.num_samples // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"the training set ({len(train_set)} samples over {dist_info.world_size} processes) is "
                         f"smaller than one batch ({cfg.batch_size})")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    model = build_model(cfg, skeleton.num_joints)
    fresh = apply_pretrained(model, pretrained) if pretrained is not None else None
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

    # Everything is checked and loaded: only now does the work dir change (an earlier run is not removed, nor its
    # config.yaml rewritten, for a run that cannot start).
    removed = []
    if dist_info.is_main:
        workdir.mkdir(parents=True, exist_ok=True)
        lock.enter_context(workdir_lock(workdir))
        check_run_paths(workdir)
        if overwrite:
            removed = clear_run(workdir)
    setup_logging(workdir, dist_info.is_main)
    if removed:
        log.info("--overwrite: removed the earlier run's %s", ", ".join(removed))
    stale = remove_stale_temporaries(workdir) if dist_info.is_main else []
    if stale:
        log.info("removed %s, left by writes that were killed", ", ".join(stale))
    if pretrained is not None:
        log.info("weights from %s%s", cfg.model.init,
                 f"; {', '.join(fresh)} start fresh (another number of joints)" if fresh else "")
    if state is not None:
        log.info("resumed from %s at step %d", resume, step)
        note = schedule_change(state.get("config") or {}, cfg, step)
        if note:
            log.warning(note)
    if dist_info.is_main:
        save_yaml(cfg, workdir / "config.yaml")
        if state is not None and not same_run and best is not None:
            best = carry_best(state_path(resume).parent, workdir, best)
    net = model
    if dist_info.enabled:
        if cfg.sync_bn:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

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
    late = [m for m in cfg.optim.milestones if m >= cfg.steps] if cfg.optim.schedule == "step" else []
    if late:  # not an error: a resumed run may give more steps
        log.warning("config key 'optim.milestones' has %s at or after 'steps' (%d): the LR does not drop there in "
                    "this run", late, cfg.steps)

    metrics = Metrics(workdir / "metrics.csv", step) if dist_info.is_main else None
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
    whole_step = WholeStepBuffers(model) if graphed is None else None  # a graph replays inside critical()
    with StopFlag() as stop:
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
                    if stop_requested(stop, dist_info, device, last or step % cfg.log_every == 0):
                        stop.interrupt()
                    if step >= cfg.steps:
                        break
            best = distributed.from_main(best, dist_info)  # only the main process validates
            completed = True
        except KeyboardInterrupt:
            write_interrupted(stop, whole_step, checkpoint, f"interrupted at step {step}; writing the checkpoint",
                               dist_info.is_main)
            raise
        except Exception as exc:
            if stop.set:  # e.g. loader workers killed by the same Ctrl-C
                write_interrupted(stop, whole_step, checkpoint,
                                   f"interrupted at step {step} ({exc}); writing the checkpoint", dist_info.is_main)
                raise KeyboardInterrupt from exc
            if step != saved_step and not updating and not isinstance(exc, FloatingPointError):
                save_before_error(stop, whole_step, checkpoint, step, exc, dist_info.is_main, loss_acc)
            raise
        finally:
            bar.close()
            net = graphed = None  # DDP's reducer holds the process group: free it before the group is destroyed
            distributed.cleanup(dist_info, synchronize=completed)
    return {"steps": step, "best": best, "best_metric": cfg.val_metric, "workdir": str(workdir),
            "best_checkpoint": str(workdir / "best.safetensors")}
