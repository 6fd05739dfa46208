"""Training: config errors, checkpoints, interrupt + bit-identical resume, AMP, and a 2-process gloo DDP run."""
import csv
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hgfast.data import SyntheticPoses
from hgfast.checkpoint import non_finite_tensors
from hgfast.models import StackedHourglass
from hgfast.train.config import ConfigError, parse_set, resolve, to_dict
from hgfast.train.loop import train
from hgfast.train.schedule import learning_rate, schedule_change
from hgfast.train.state import STATE_FILE, load_state, rng_state, set_rng_state

TINY = ["model.nstack=1", "model.nfeat=16", "model.depth=2", "data.input_size=32", "data.image_size=48",
        "data.train_length=40", "data.val_length=8", "data.workers=0", "batch_size=4", "steps=4", "val_every=2",
        "vis_every=2", "ckpt_every=2", "log_every=1", "threads=1", "optim.name=adam", "optim.lr=1e-3"]


def _csv_rows(path) -> list[dict]:
    """The rows of a run's metrics.csv (read whole: no file left open)."""
    return list(csv.DictReader(Path(path).read_text().splitlines()))


def tiny(tmp_path, *extra, name="run"):
    return resolve(path=None, overrides=TINY + list(extra), workdir=str(tmp_path / name))


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'optim.lrr'.*lr"):
        resolve(overrides=["optim.lrr=1"])
    with pytest.raises(ConfigError, match="'model.nstack' expects int"):
        resolve(overrides=["model.nstack=two"])
    with pytest.raises(ConfigError, match="'amp' must be one of"):
        resolve(overrides=["amp=fp8"])
    with pytest.raises(ConfigError, match="data.input_size"):
        resolve(overrides=["data.input_size=100"])
    for bad in ("[256, 200]", "[256]", "[256, 192, 3]", "256x192", "[256.0, 192]"):
        with pytest.raises(ConfigError, match="'data.input_size'"):
            resolve(overrides=[f"data.input_size={bad}"])
    assert resolve(overrides=["data.input_size=[256, 192]"]).data.input_size == [256, 192]  # height, width
    for bad, key in (("optim.gamma=-0.1", "'optim.gamma'.*> 0"), ("optim.lr=.inf", "'optim.lr' must be finite"),
                     ("optim.weight_decay=.nan", "'optim.weight_decay' must be finite"), ("seed=-1", "'seed'"),
                     ("data.seed=-1", "'data.seed'"), ("val_thresholds=[0.5, 0]", "'val_thresholds'.*> 0"),
                     ("optim.milestones=[0]", "'optim.milestones'.*> 0"),
                     ("data.box_margin=1e300", "'data.box_margin' must be a number from 0.01 to 100"),
                     ("data.box_margin=0", "'data.box_margin' must be a number from 0.01 to 100")):
        with pytest.raises(ConfigError, match=key):
            resolve(overrides=[bad])
    six = resolve(overrides=["optim.milestones=[6e5, 7.5e5]", "steps=8e5"])  # YAML 1.1 reads 6e5 as a string
    assert six.optim.milestones == [600000, 750000] and six.steps == 800000
    assert all(type(v) is int for v in (*six.optim.milestones, six.steps))
    with pytest.raises(ConfigError, match="'steps' expects int"):
        resolve(overrides=["steps=2.5e3x"])
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve(preset="huge")
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["optim.lr"])
    with pytest.raises(ConfigError, match=r"--set model.nstack.x: model.nstack was set to a value, 2, not a section"):
        parse_set(["model.nstack=2", "model.nstack.x=1"])  # was a TypeError from deep inside
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        resolve(path=tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"is a folder \(a run's work dir\? give --workdir"):
        resolve(path=tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"\xd8\xff\x00binary")
    with pytest.raises(ConfigError, match=r"weights.safetensors is not a text \(YAML\) file"):
        resolve(path=tmp_path / "weights.safetensors")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  nstack: 1\n  colour: red\n")
    with pytest.raises(ConfigError, match="'model.colour'"):
        resolve(path=bad)
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  nstack: 3\noptim:\n  lr: 0.001\n")
    cfg = resolve(path=good, overrides=["model.nstack=4"])
    assert cfg.model.nstack == 4 and cfg.optim.lr == 1e-3
    assert resolve("cpu-small").data.input_size == 64
    for name in ("mpii-hg2", "mpii-hg8", "coco-hg2"):  # every preset resolves once told where its data is
        assert resolve(name, overrides=[f"data.root={tmp_path}"]).model.nfeat == 256
    coco = resolve("coco-hg2", overrides=[f"data.root={tmp_path}"])
    assert (coco.data.dataset, coco.data.augment, coco.val_metric) == ("coco", "mmpose", "ap")
    assert [learning_rate(coco, s) / 5e-4 for s in (499, 99619, 99620, 117200)] == pytest.approx([1, 1, 0.1, 0.01])


def test_learning_rate_schedules():
    cfg = resolve(overrides=["optim.milestones=[10, 20]", "optim.warmup_steps=5", "steps=30"])
    assert learning_rate(cfg, 0) == pytest.approx(cfg.optim.lr / 5)
    assert [learning_rate(cfg, s) / cfg.optim.lr for s in (5, 10, 25)] == pytest.approx([1, 0.1, 0.01])
    cos = resolve(overrides=["optim.schedule=cosine", "steps=10"])
    assert learning_rate(cos, 0) == pytest.approx(cos.optim.lr) and learning_rate(cos, 10) == pytest.approx(0)


def test_a_resumed_run_says_when_its_learning_rate_schedule_changed():
    saved = to_dict(resolve(overrides=["optim.schedule=cosine", "steps=100"]))
    longer = resolve(overrides=["optim.schedule=cosine", "steps=200"])
    note = schedule_change(saved, longer, 100)  # the saved run ended at lr 0; 200 steps put step 100 at half
    assert note.startswith("resumed with another learning-rate schedule (steps 100 -> 200): step 100 trains at "
                           f"lr {longer.optim.lr / 2:.3g}, where the saved run's schedule had 0")
    assert schedule_change(saved, resolve(path=saved), 50) is None
    stepped = to_dict(resolve(overrides=["optim.milestones=[50]", "steps=100"]))
    assert schedule_change(stepped, resolve(overrides=["optim.milestones=[50]", "steps=200"]), 60) is None
    assert "optim.milestones [50] -> [80]" in schedule_change(
        stepped, resolve(overrides=["optim.milestones=[80]", "steps=100"]), 60)
    assert schedule_change({"optim": {"lr": "high"}}, longer, 10) is None  # an unreadable saved schedule


def _weights(path):
    return StackedHourglass.from_checkpoint(path).state_dict()


class _KillAt:
    def __init__(self, step):
        self.step = step

    def __call__(self, step, info):
        if step == self.step:
            raise KeyboardInterrupt


def _logged(work):
    return [(r["step"], r["lr"], r["loss"]) for r in _csv_rows(work / "metrics.csv") if r["loss"]]


def _assert_same_run(work, other):
    a, b = _weights(work / "last.safetensors"), _weights(other / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    original, resumed = load_state(work), load_state(other)
    for k, v in original["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg"], resumed["optimizer"]["state"][k]["exp_avg"])
        assert torch.equal(v["step"], resumed["optimizer"]["state"][k]["step"])
    assert resumed["progress"]["seen"] == original["progress"]["seen"] == 16
    assert _logged(other) == _logged(work)  # the log window's running loss is resumed too


def _second_ctrl_c_inside_the_update(monkeypatch, call):
    """The first Ctrl-C of a pair lands at once, the second inside Adam's update (after its counter moved)."""
    import signal

    adam_step, calls = torch.optim.Adam.step, []

    def step(self, *args, **kwargs):
        out = adam_step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == call:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)


def _second_ctrl_c_inside_the_forward(monkeypatch, step):
    """Two Ctrl-Cs from inside step ``step``'s forward, after its first BatchNorm layers updated their running
    statistics."""
    import signal

    adam_step, bn_forward, adam_calls, bn_calls = torch.optim.Adam.step, torch.nn.BatchNorm2d.forward, [], []

    def counted_step(self, *args, **kwargs):
        adam_calls.append(1)
        return adam_step(self, *args, **kwargs)

    def forward(self, x):
        out = bn_forward(self, x)
        if self.training and len(adam_calls) == step - 1:
            bn_calls.append(1)
            if len(bn_calls) == 3:
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", counted_step)
    monkeypatch.setattr(torch.nn.BatchNorm2d, "forward", forward)


def test_interrupt_and_resume_bit_identical(tmp_path, monkeypatch):
    """On the CPU also on a GPU machine: bit-identical needs deterministic kernels (cuDNN's backward is not)."""
    straight = tiny(tmp_path, "device=cpu", "data.workers=1", "log_every=2", name="straight")
    summary = train(straight)
    assert summary["steps"] == 4
    work = tmp_path / "straight"
    for f in ("config.yaml", "train.log", "metrics.csv", "last.state.pt", "last.safetensors", "best.safetensors",
              "vis/step_0000002.jpg", "val/step_0000004.json"):
        assert (work / f).is_file(), f
    rows = list(_csv_rows(work / "metrics.csv"))
    assert [r["step"] for r in rows if r["loss"]] == ["2", "4"] and any(r["val_pck"] for r in rows)
    assert not logging.getLogger("hgfast.train").handlers  # train.log is closed when train() returns

    cfg = tiny(tmp_path, "device=cpu", "ckpt_every=100", "log_every=2", name="killed")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[_KillAt(3)])  # in the middle of a log window
    state = load_state(tmp_path / "killed")
    assert state["step"] == 3  # the Ctrl-C checkpoint, not a periodic one
    torch.manual_seed(123)  # resume must not depend on the RNG state of the new process
    assert train(cfg, resume=tmp_path / "killed")["steps"] == 4
    _assert_same_run(work, tmp_path / "killed")

    cfg = tiny(tmp_path, "device=cpu", "ckpt_every=100", "log_every=2", name="signalled")
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        _second_ctrl_c_inside_the_update(m, 3)
        train(cfg)
    state = load_state(tmp_path / "signalled")  # step 3 done, Adam's counter with it: not step 2 with Adam at 3
    assert state["step"] == 3 and all(int(v["step"]) == 3 for v in state["optimizer"]["state"].values())
    assert train(cfg, resume=tmp_path / "signalled")["steps"] == 4
    _assert_same_run(work, tmp_path / "signalled")

    cfg = tiny(tmp_path, "device=cpu", "ckpt_every=100", "log_every=2", name="mid-forward")
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        _second_ctrl_c_inside_the_forward(m, 3)
        train(cfg)
    assert load_state(tmp_path / "mid-forward")["step"] == 2  # step 3's BN updates are not in it
    assert train(cfg, resume=tmp_path / "mid-forward")["steps"] == 4
    _assert_same_run(work, tmp_path / "mid-forward")


def test_sigterm_and_a_ctrl_c_while_the_interrupts_state_is_written(tmp_path, monkeypatch):
    """SIGTERM (preemption) stops after the step as Ctrl-C does; a second signal while the interrupt's state is
    being written waits for it."""
    import signal

    import hgfast.train.loop as loop

    def term_at(step, info):
        if step == 2:
            signal.raise_signal(signal.SIGTERM)

    cfg = tiny(tmp_path, "ckpt_every=100", "val_every=100", "vis_every=100", name="term")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[term_at])
    assert load_state(tmp_path / "term")["step"] == 2
    save_state, saves = loop.save_state, []

    def interrupted_save(*args, **kwargs):
        saves.append(1)
        signal.raise_signal(signal.SIGINT)  # the first interrupt's save gets another Ctrl-C
        return save_state(*args, **kwargs)

    monkeypatch.setattr(loop, "save_state", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path, "steps=5", "ckpt_every=100", "val_every=100", "vis_every=100", name="term"),
              resume=tmp_path / "term", callbacks=[lambda step, info: step == 3 and signal.raise_signal(signal.SIGINT)])
    assert saves == [1] and load_state(tmp_path / "term")["step"] == 3


def test_signals_after_the_interrupt_wait_until_its_state_is_written():
    import signal

    from hgfast.train.interrupt import StopFlag

    flag = StopFlag()
    flag._handle(signal.SIGINT, None)  # the first: stop after the step
    assert flag.set
    with pytest.raises(KeyboardInterrupt):
        flag._handle(signal.SIGINT, None)  # the second: at once
    flag._handle(signal.SIGTERM, None)  # a third while the interrupt unwinds: waits ...
    with pytest.raises(KeyboardInterrupt):
        with flag.critical():  # ... for the state's write
            pass


def test_resume_with_another_batch_size_goes_on_with_the_epochs_next_samples(tmp_path, monkeypatch):
    from hgfast.data import SyntheticPoses

    getitem, taken = SyntheticPoses.__getitem__, []

    def recorded(self, key):
        if self.split == "train":
            taken.append(int(key))
        return getitem(self, key)

    monkeypatch.setattr(SyntheticPoses, "__getitem__", recorded)
    train(tiny(tmp_path, "steps=6", "val_every=100", "vis_every=100", name="straight"))  # batch 4
    straight, taken[:] = list(taken), []
    train(tiny(tmp_path, "steps=2", "val_every=100", "vis_every=100", name="resumed"))
    train(tiny(tmp_path, "steps=4", "batch_size=8", "val_every=100", "vis_every=100", name="resumed"),
          resume=tmp_path / "resumed")
    assert taken == straight  # 2 batches of 4, then 2 of 8: the same 24 samples of epoch 0, in order
    rows = list(_csv_rows(tmp_path / "resumed" / "metrics.csv"))
    assert {r["epoch"] for r in rows if r["loss"]} == {"0"}


def test_logged_throughput_leaves_out_validation_and_stale_temporaries_are_removed(tmp_path, monkeypatch):
    import time

    import hgfast.train.loop as loop

    validate = loop.validate

    def slow_validate(*args, **kwargs):
        time.sleep(2.0)
        return validate(*args, **kwargs)

    monkeypatch.setattr(loop, "validate", slow_validate)
    train(tiny(tmp_path, "steps=4", "val_every=2", "vis_every=100", "log_every=4"))
    row = next(r for r in _csv_rows(tmp_path / "run" / "metrics.csv") if r["step"] == "4" and r["loss"])
    # 16 images in elapsed_s, of which step 2's validation took over 2 s: left out, the rate is above
    # 16 / (elapsed_s - 2) whatever the machine's speed; counted in, it would be below 16 / elapsed_s
    assert float(row["images_per_s"]) > 16 / (float(row["elapsed_s"]) - 1.9) > 0
    work = tmp_path / "run"
    for name in (".last.state.pt.k3j9x0a1.tmp", "val/.step_0000004.json.abcdefgh.tmp", ".notes.txt.tmp"):
        (work / name).write_text("x")
    train(tiny(tmp_path, "steps=5", "val_every=100", "vis_every=100"), resume=work)
    assert sorted(p.name for p in work.rglob(".*")) == [".notes.txt.tmp"]  # only what hgfast writes goes
    assert "removed .last.state.pt.k3j9x0a1.tmp, val/.step_0000004.json.abcdefgh.tmp" in \
        (work / "train.log").read_text()


def test_resume_refuses_config_changes_that_break_the_state(tmp_path):
    cfg = tiny(tmp_path, "steps=2")
    train(cfg)
    work = tmp_path / "run"
    config, state = (work / "config.yaml").read_bytes(), (work / "last.state.pt").read_bytes()
    for change, key in (("model.nfeat=32", "'model.nfeat' = 32.*16"), ("amp=fp16", "'amp' = 'fp16'.*'none'"),
                        ("optim.name=rmsprop", "'optim.name'"), ("data.input_size=64", "'data.input_size'"),
                        ("val_thresholds=[0.05]", r"'val_thresholds \(its first.*' = 0.05.*0.2"),
                        ("val_flip=true", "'val_flip'"), ("data.val_length=4", "'data.val_length'"),
                        ("data.seed=1", "'data.seed'"), ("data.image_size=64", "'data.image_size' = 64"),
                        ("data.input_norm=bearpaw", "'data.input_norm' = 'bearpaw': the saved run has 'none'"),
                        ("steps=1", "'steps' = 1: the saved run is at step 2")):
        with pytest.raises(ValueError, match=key):
            train(tiny(tmp_path, "steps=3", change), resume=work)
        assert (work / "config.yaml").read_bytes() == config and (work / "last.state.pt").read_bytes() == state
    from hgfast.train.state import check_resumable

    older = {"data": {"dataset": "synthetic"}}  # a state from before data.input_norm: its inputs were in [0, 1]
    check_resumable(older, {"data": {"dataset": "synthetic", "input_norm": "none"}})
    with pytest.raises(ValueError, match="'data.input_norm' = 'anibali': the saved run has 'none'"):
        check_resumable(older, {"data": {"dataset": "synthetic", "input_norm": "anibali"}})
    old = torch.load(work / "last.state.pt", weights_only=True)
    del old["progress"]  # a state written before the log sums were saved
    torch.save(old, work / "last.state.pt")
    changed = ("steps=3", "log_every=3", "val_every=3", "ckpt_every=3", "optim.lr=1e-4", "optim.schedule=cosine",
               "model.fused=true", "data.input_size=[32,32]", "optim.weight_decay=0.01",  # the same crops as 32
               "val_thresholds=[0.2, 0.5]")  # the same first threshold as the default
    assert train(tiny(tmp_path, *changed), resume=work)["steps"] == 3
    assert "steps: 3" in (work / "config.yaml").read_text()
    assert "another learning-rate schedule (steps 2 -> 3, optim.lr 0.001 -> 0.0001, optim.schedule step -> cosine)" \
        in (work / "train.log").read_text()
    groups = load_state(work)["optimizer"]["param_groups"]  # the new value, not the saved run's
    assert [g["weight_decay"] for g in groups] == [0.01] * len(groups)


def test_resume_refuses_changes_to_what_defines_the_validation_set():
    """COCO's crops (box_margin), people (category_id) and, where AP chooses best, its OKS sigmas; MPII's
    1-based coordinates: a change would compare best against a score on another validation set."""
    from hgfast.train.state import check_resumable

    coco = {"data": {"dataset": "coco", "box_margin": 1.25, "category_id": 0, "oks_sigmas": []}, "val_metric": "ap"}
    for key, value in (("box_margin", 1.5), ("category_id", 2), ("oks_sigmas", [0.1] * 17)):
        changed = {**coco, "data": {**coco["data"], key: value}}
        with pytest.raises(ValueError, match=f"'data.{key}'"):
            check_resumable(coco, changed)
    by_pck = {**coco, "val_metric": "pck"}  # OKS sigmas do not enter PCK
    check_resumable(by_pck, {**by_pck, "data": {**coco["data"], "oks_sigmas": [0.1] * 17}})
    mpii = {"data": {"dataset": "mpii", "one_based": True}}
    with pytest.raises(ValueError, match="'data.one_based'"):
        check_resumable(mpii, {"data": {"dataset": "mpii", "one_based": False}})


def test_resume_validates_the_step_whose_validation_an_interrupt_cut_short(tmp_path, monkeypatch):
    """A second Ctrl-C inside the last step's validation: the resumed run (which starts after that step) validates
    it, writes best.safetensors and the metrics row, and trains no further step."""
    import hgfast.train.loop as loop

    validate = loop.validate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    cfg = tiny(tmp_path, "steps=2", "val_every=2", "ckpt_every=100")
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(loop, "validate", interrupted)
        train(cfg)
    work = tmp_path / "run"
    assert load_state(work)["step"] == 2 and not (work / "best.safetensors").exists()
    assert loop.validate is validate
    summary = train(cfg, resume=work)
    assert summary["steps"] == 2 and summary["best"] is not None and (work / "best.safetensors").is_file()
    assert [r["step"] for r in _csv_rows(work / "metrics.csv") if r["val_pck"]] == ["2"]
    assert _loss_steps(work) == ["1", "2"] and not load_state(work)["progress"]["validation_pending"]


def test_resume_and_overwrite_of_the_same_run_are_refused_together(tmp_path):
    """--resume continues the work dir's run, --overwrite would replace it: one of them (overwrite was ignored)."""
    train(tiny(tmp_path, "steps=2"))
    before = (tmp_path / "run" / STATE_FILE).read_bytes()
    with pytest.raises(ValueError, match="--overwrite starts afresh and --resume continues the run in"):
        train(tiny(tmp_path, "steps=3"), resume=tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / STATE_FILE).read_bytes() == before


def test_a_file_as_the_work_dir_is_refused_by_name(tmp_path):
    """A work dir that is a file, or inside one, is a ValueError naming it (was "File exists" / a traceback)."""
    (tmp_path / "afile").write_text("mine")
    for workdir in ("afile", "afile/sub"):
        with pytest.raises(ValueError, match=f"workdir .*{workdir}: .*afile is a file, not a folder"):
            train(tiny(tmp_path, name=workdir))
    assert (tmp_path / "afile").read_text() == "mine"


def test_resume_writes_the_log_row_an_interrupt_cut_short(tmp_path):
    """An interrupt between a log step's update and its metrics.csv row (a second Ctrl-C while the loss syncs, or a
    callback's): the resumed run, which starts after that step, writes the row first, with the same loss."""
    extra = ("steps=8", "log_every=3", "val_every=100", "ckpt_every=100", "vis_every=0")

    def interrupt_at_six(step, info):
        if step == 6:
            raise KeyboardInterrupt

    train(tiny(tmp_path, *extra, name="whole"))
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path, *extra), callbacks=[interrupt_at_six])
    work = tmp_path / "run"
    assert load_state(work)["step"] == 6 and load_state(work)["progress"]["log_pending"]
    assert _loss_steps(work) == ["3"]
    train(tiny(tmp_path, *extra), resume=work)
    rows = {name: [(r["step"], r["loss"], r["lr"]) for r in _csv_rows(tmp_path / name / "metrics.csv")
                   if r["loss"]] for name in ("whole", "run")}
    assert [step for step, _, _ in rows["run"]] == ["3", "6", "8"] and rows["run"] == rows["whole"]


def _loss_steps(work):
    return [r["step"] for r in _csv_rows(work / "metrics.csv") if r["loss"]]


def test_fresh_run_refuses_an_earlier_run_unless_overwrite(tmp_path, capsys):
    from hgfast.cli import main

    cfg = tiny(tmp_path, "steps=2")
    train(cfg)
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        train(cfg)
    argv = ["train", "--workdir", cfg.workdir] + [a for s in TINY for a in ("--set", s)]
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--set", "steps=3"]) == 0
    work = tmp_path / "run"
    assert _loss_steps(work) == ["1", "2", "3"]  # the earlier run's rows are gone
    for name in ("notes.txt", "eval.json", "eval.jpg", "vis/mine.jpg"):
        (work / name).write_text("x")
    with pytest.raises(KeyboardInterrupt):  # an overwrite interrupted before it validated and drew anything
        train(tiny(tmp_path, "val_every=100", "vis_every=100"), overwrite=True, callbacks=[_KillAt(1)])
    left = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    assert left == ["config.yaml", "last.safetensors", "last.state.pt", "metrics.csv", "notes.txt", "train.log",
                    "vis", "vis/mine.jpg"]  # no best.safetensors, val/ or eval.json of the earlier run
    assert "--overwrite: removed the earlier run's" in (work / "train.log").read_text()
    (work / STATE_FILE).unlink()  # the big state deleted, the weights and metrics kept: still a run
    weights = (work / "last.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match=r"\(last.safetensors\): pass --overwrite to replace it "
                                              r"\(last.state.pt, which --resume continues, is gone\)"):
        train(cfg)
    assert (work / "last.safetensors").read_bytes() == weights
    with pytest.raises(ValueError, match=r"'optim.warmup_steps' \(5\) must be <= 'steps' \(4\)"):
        train(tiny(tmp_path, "optim.warmup_steps=5", name="failed"))
    assert not (tmp_path / "failed").exists()
    with pytest.raises(ValueError, match="smaller than one batch"):
        train(tiny(tmp_path, "data.train_length=2", name="failed"))  # found before the work dir is made
    assert not (tmp_path / "failed").exists()
    # --overwrite removes the earlier run only for a run that can start
    before = {f: (work / f).read_bytes() for f in ("config.yaml", "last.safetensors", "metrics.csv")}
    with pytest.raises(ValueError, match="smaller than one batch"):
        train(tiny(tmp_path, "data.train_length=2"), overwrite=True)
    assert {f: (work / f).read_bytes() for f in before} == before
    assert train(tiny(tmp_path, "optim.warmup_steps=4", name="failed"))["steps"] == 4  # its rerun is no conflict
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("steps: 1\n")  # a user's config in the work dir is not a run
    assert train(tiny(tmp_path, "steps=1", name="mine"))["steps"] == 1


def test_milestones_at_or_after_the_last_step_are_warned_about(tmp_path):
    warning = "config key 'optim.milestones' has [2, 5] at or after 'steps' (2): the LR does not drop there"
    train(tiny(tmp_path, "steps=2", "optim.milestones=[1, 2, 5]"))
    assert warning in (tmp_path / "run" / "train.log").read_text()
    train(tiny(tmp_path, "steps=6", "optim.milestones=[1, 2, 5]"), resume=tmp_path / "run")  # more steps: in reach
    assert (tmp_path / "run" / "train.log").read_text().count("'optim.milestones' has") == 1  # the first run's
    train(tiny(tmp_path, "steps=2", "optim.milestones=[5]", "optim.schedule=cosine", name="cosine"))
    assert "optim.milestones" not in (tmp_path / "cosine" / "train.log").read_text()  # only the step schedule's


def test_vis_every_draws_between_validations(tmp_path):
    train(tiny(tmp_path, "steps=3", "val_every=3", "vis_every=1", "log_every=3"))
    work = tmp_path / "run"
    assert sorted(p.name for p in (work / "vis").iterdir()) == [f"step_000000{i}.jpg" for i in (1, 2, 3)]
    assert sorted(p.name for p in (work / "val").iterdir()) == ["step_0000003.json"]


def test_resume_after_a_crash_drops_later_metrics_and_keeps_best(tmp_path):
    def crash(step, info):
        if step == 4:
            raise SystemExit("killed")  # as a crash that writes nothing (an error writes the state: next test)

    cfg = tiny(tmp_path, "steps=5", "val_every=1", "ckpt_every=100")
    with pytest.raises(SystemExit, match="killed"):
        train(cfg, callbacks=[crash])
    work = tmp_path / "run"
    rows = list(_csv_rows(work / "metrics.csv"))
    state = load_state(work)  # written when best improved, though no periodic checkpoint was due
    assert state["best"] == pytest.approx(max(float(r["val_pck"]) for r in rows if r["val_pck"]), abs=1e-5)
    assert _loss_steps(work)[-1] == "3" and state["step"] <= 3
    train(cfg, resume=work)
    assert _loss_steps(work) == ["1", "2", "3", "4", "5"]  # rows after the state's step are not repeated
    steps = [int(r["step"]) for r in _csv_rows(work / "metrics.csv") if r["val_pck"]]
    assert steps == [1, 2, 3, 4, 5]


def test_a_malformed_metrics_row_is_named_by_file_and_line(tmp_path):
    from hgfast.train.rundir import Metrics

    train(tiny(tmp_path, "steps=2"))
    work = tmp_path / "run"
    lines = (work / "metrics.csv").read_text().splitlines()
    good = lines[1].split(",")
    for bad in (["two", *good[1:]], ["", *good[1:]], [*good, "x", "y"]):  # no step, or more fields than columns
        (work / "metrics.csv").write_text("\n".join([*lines[:2], ",".join(bad), *lines[2:]]) + "\n")
        with pytest.raises(ValueError, match=rf"{work / 'metrics.csv'}, line 3: not a row of metrics.csv"):
            train(tiny(tmp_path, "steps=3"), resume=work)
    (work / "metrics.csv").write_text("\n".join(lines[:2] + [good[0]]))  # an older run's row: fewer fields
    Metrics(work / "metrics.csv", 2)
    assert _csv_rows(work / "metrics.csv")[1] == dict.fromkeys(Metrics.COLUMNS, "") | {"step": good[0]}


def test_an_error_mid_run_writes_the_last_whole_step_first(tmp_path, monkeypatch):
    """Bad data found mid-run (here an image of the validation set, then a training sample) stops the run with its
    error, after writing the state of the last whole step: fixed, --resume goes on from there, the validation the
    error cut short included. A diverged loss writes nothing (the last checkpoint is the better one)."""
    import hgfast.train.loop as loop

    cfg = tiny(tmp_path, "steps=6", "val_every=3", "ckpt_every=100", "log_every=1")
    real_validate = loop.validate
    broken = lambda *args, **kwargs: (_ for _ in ()).throw(ValueError("corrupt image val/7.jpg"))  # noqa: E731
    monkeypatch.setattr(loop, "validate", broken)
    with pytest.raises(ValueError, match="corrupt image val/7.jpg"):
        train(cfg)
    work = tmp_path / "run"
    state = load_state(work)
    assert state["step"] == 3 and state["progress"]["validation_pending"]
    assert "step 3: ValueError: corrupt image val/7.jpg; writing the checkpoint" in (work / "train.log").read_text()
    monkeypatch.setattr(loop, "validate", real_validate)
    real_getitem, calls = SyntheticPoses.__getitem__, []

    def fifth_training_sample_fails(self, key):  # step 4's batch reads four; step 5's first is missing
        if len(self) == 40:  # the training set (data.train_length)
            calls.append(key)
            if len(calls) == 5:
                raise FileNotFoundError("image not found: 5.jpg")
        return real_getitem(self, key)

    monkeypatch.setattr(SyntheticPoses, "__getitem__", fifth_training_sample_fails)
    with pytest.raises(FileNotFoundError, match="5.jpg"):
        train(cfg, resume=work)
    assert load_state(work)["step"] == 4
    monkeypatch.setattr(SyntheticPoses, "__getitem__", real_getitem)
    assert train(cfg, resume=work)["steps"] == 6
    steps = [int(r["step"]) for r in _csv_rows(work / "metrics.csv") if r["val_pck"]]
    assert steps == [3, 6] and _loss_steps(work) == [str(i) for i in range(1, 7)]


def test_an_error_after_divergence_or_inside_the_update_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """No state is written for an error where the loss has gone NaN (the weights may have), for one raised inside
    the parameter update (the weights and the optimiser may be half a step on), nor where an update made the weights
    overflow though its loss was finite: the last checkpoint stays."""
    import hgfast.train.loop as loop

    def fail_at(n):
        def callback(step, info):
            if step == n:
                raise RuntimeError("callback failed")
        return callback

    quiet = ("steps=5", "ckpt_every=2", "log_every=100", "val_every=100", "vis_every=100")
    real_loss = loop.heatmap_loss
    calls = []

    def nan_from_step_3(cfg):
        loss = real_loss(cfg)

        def counted(*args):
            calls.append(1)
            return loss(*args) * (float("nan") if len(calls) >= 3 else 1.0)
        return counted

    monkeypatch.setattr(loop, "heatmap_loss", nan_from_step_3)
    with pytest.raises(RuntimeError, match="callback failed"):
        train(tiny(tmp_path, *quiet, name="diverged"), callbacks=[fail_at(3)])
    assert load_state(tmp_path / "diverged")["step"] == 2
    assert "the loss had diverged, so no checkpoint is written" in (tmp_path / "diverged" / "train.log").read_text()
    calls.clear()
    with pytest.raises(FloatingPointError):  # found at step 3's log line: nothing written over step 2's state
        train(tiny(tmp_path, "steps=5", "ckpt_every=2", "log_every=1", "val_every=100", "vis_every=100", name="nan"))
    assert load_state(tmp_path / "nan")["step"] == 2
    monkeypatch.setattr(loop, "heatmap_loss", real_loss)
    adam_step, updates = torch.optim.Adam.step, []

    def fourth_update_fails(self, *args, **kwargs):  # after step 2's checkpoint and step 3's whole step
        out = adam_step(self, *args, **kwargs)
        updates.append(1)
        if len(updates) == 4:
            raise RuntimeError("CUDA out of memory")
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", fourth_update_fails)
    with pytest.raises(RuntimeError, match="out of memory"):
        train(tiny(tmp_path, *quiet, name="update"))
    assert load_state(tmp_path / "update")["step"] == 2

    def fourth_update_overflows(self, *args, **kwargs):  # the step's loss (before the update) is still finite
        out = adam_step(self, *args, **kwargs)
        updates.append(1)
        if len(updates) == 4:
            self.param_groups[0]["params"][0].data.fill_(float("inf"))
        return out

    updates.clear()
    monkeypatch.setattr(torch.optim.Adam, "step", fourth_update_overflows)
    with pytest.raises(FloatingPointError, match="step 4: the weights are no longer finite .* the checkpoint of step "
                                                 "2 is kept"):
        train(tiny(tmp_path, *quiet, name="overflow"))
    assert load_state(tmp_path / "overflow")["step"] == 2
    assert not non_finite_tensors(load_state(tmp_path / "overflow")["model"])


def test_resume_into_another_folder_carries_the_best_weights(tmp_path):
    """The resumed run's best score comes with its best.safetensors: a new run that does not beat it still has
    the file its summary names; without the old file the score is dropped, so the new run writes its own."""
    first = train(tiny(tmp_path, "steps=2", "val_every=1"))
    old = tmp_path / "run" / "best.safetensors"
    # Nothing left to train (or to validate): the new folder's best is the old run's, file included.
    same = train(tiny(tmp_path, "steps=2", "val_every=1", name="more"), resume=tmp_path / "run")
    assert same["best"] == first["best"] and same["best_checkpoint"] == str(tmp_path / "more" / "best.safetensors")
    assert (tmp_path / "more" / "best.safetensors").read_bytes() == old.read_bytes()
    old.unlink()
    again = train(tiny(tmp_path, "steps=3", "val_every=1", name="again"), resume=tmp_path / "run")
    assert (tmp_path / "again" / "best.safetensors").is_file() and again["best"] is not None


def test_resume_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="last.state.pt"):
        train(tiny(tmp_path), resume=tmp_path / "nothing")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.pt"):
        train(tiny(tmp_path), resume=bad)


def test_amp_bf16_channels_last_fused_flag_and_visible_weights(tmp_path):
    cfg = tiny(tmp_path, "amp=bf16", "channels_last=true", "steps=1", "data.loss_weight=visible", "model.fused=true",
               "optim.name=rmsprop", "data.augment=bearpaw")
    assert train(cfg)["steps"] == 1


def _free_port() -> str:
    """A free local port for torchrun (a fixed one fails when another run holds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_ddp_two_processes_gloo(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "hgfast.cli", "train", "--workdir", str(tmp_path / "ddp"), "--set", "steps=2", "--set", "device=cpu"]
    cmd += [a for s in TINY if not s.startswith("steps") for a in ("--set", s)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert "2 process(es)" in log
    assert load_state(tmp_path / "ddp")["step"] == 2
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["best"] == load_state(tmp_path / "ddp")["best"] is not None


@pytest.mark.parametrize("callers_group", [False, True])
def test_every_process_gets_the_main_processs_value(tmp_path, callers_group):
    """from_main broadcasts; cleanup destroys the group setup() made and keeps a caller's own."""
    script = tmp_path / "from_main.py"
    script.write_text("import sys\nimport torch.distributed as dist\nfrom hgfast.train import distributed\n"
                      + ("dist.init_process_group('gloo')\n" if callers_group else "")
                      + "info, _ = distributed.setup('cpu')\n"
                      "value = distributed.from_main({'best': 0.5} if info.is_main else None, info)\n"
                      "distributed.cleanup(info, synchronize=True)\n"
                      "kept = dist.is_initialized()\n"
                      + ("dist.destroy_process_group()\n" if callers_group else "")
                      + "open(f'{sys.argv[1]}/rank{info.rank}.txt', 'w').write(f'{value} {kept}')\n")
    port = _free_port()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           port, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == f"{{'best': 0.5}} {callers_group}"


def test_train_and_validate_on_mpii_files(tmp_path):
    import shutil

    from test_data import _write_mpii

    root = tmp_path / "mpii"
    (root / "annot").mkdir(parents=True)
    valid, _, _ = _write_mpii(root)
    shutil.move(valid, root / "annot" / "valid.h5")
    shutil.copy(root / "annot" / "valid.h5", root / "annot" / "train.h5")
    cfg = tiny(tmp_path, "data.dataset=mpii", f"data.root={root}", "steps=2", "batch_size=2")
    assert train(cfg)["steps"] == 2
    table = json.loads((tmp_path / "run" / "val" / "step_0000002.json").read_text())
    assert list(table["pck"]) == ["0.5", "0.1"] and len(table["mean_joints"]) == 14
    assert "pelvis" not in table["mean_joints"] and table["count"]["pelvis"] == 2


def test_rng_state_saved_on_more_gpus_restores_the_ones_present(monkeypatch):
    """A state from an 8-GPU run resumed on 1 GPU restores device 0's generator instead of failing."""
    state = rng_state()
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((device, int(s[0]))))
    set_rng_state(state)
    assert restored == [(0, 0)]


def test_drop_off_map_zeroes_the_weight_of_joints_pushed_off_the_crop():
    from hgfast.train.loop import device_batch

    kp = torch.tensor([[[10.0, 10.0], [-20.0, 5.0], [70.0, 140.0], [-8.0, 30.0]]])  # crop pixels of a 64 crop
    batch = {"image": torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "keypoints": kp,
             "annotated": torch.ones(1, 4), "visible": torch.tensor([[1.0, 1.0, 0.0, 1.0]])}
    _, heat, weights = device_batch(batch, torch.device("cpu"), 64, "annotated", False)
    assert weights.tolist() == [[1, 1, 1, 1]] and torch.allclose(heat, kp / 4)  # the Lua way: all trained
    _, _, weights = device_batch(batch, torch.device("cpu"), 64, "annotated", False, off_map=(1.0, "unbiased"))
    assert weights.tolist() == [[1, 0, 0, 1]]  # x = -5 and y = 35 heatmap px lie > 3 sigma off; x = -2 does not
    _, _, weights = device_batch(batch, torch.device("cpu"), 64, "visible", False, off_map=(2.0, "unbiased"))
    assert weights.tolist() == [[1, 1, 0, 1]]  # a wider window reaches x = -5; the third is not visible
    tall = dict(batch, keypoints=torch.tensor([[[10.0, 10.0], [40.0, 60.0], [44.0, 60.0], [-8.0, 30.0]]]))
    _, _, weights = device_batch(tall, torch.device("cpu"), (64, 32), "annotated", False, off_map=(1.0, "unbiased"))
    assert weights.tolist() == [[1, 1, 0, 1]]  # 16x8 heatmaps: x = 10 reaches the last column (7), x = 11 not;
    # y = 15 lies on the map's 16 rows (8 rows, had height and width been swapped, would leave it off)
    if torch.cuda.is_available():  # the masked weights are pinned again for the asynchronous copy
        _, _, weights = device_batch(batch, torch.device("cuda"), 64, "annotated", False, off_map=(1.0, "unbiased"))
        assert weights.device.type == "cuda" and weights.tolist() == [[1, 0, 0, 1]]
    cfg = resolve(overrides=["data.drop_off_map=true"])
    assert cfg.data.drop_off_map and resolve("coco-hg2", overrides=["data.root=/x"]).data.drop_off_map


def test_model_init_starts_a_fresh_run_from_weights_and_resume_does_not_reread_them(tmp_path):
    """``model.init``: the weights of another run (or a peer checkpoint) in a model of the config's architecture;
    another number of joints leaves only the heatmap convs fresh; a misfit names the keys to set."""
    from hgfast.train.pretrained import apply_pretrained, read_pretrained

    train(tiny(tmp_path, "steps=1", name="source"))
    source = tmp_path / "source" / "last.safetensors"
    cfg = tiny(tmp_path, f"model.init={source}", "steps=2", "ckpt_every=1", name="tuned")
    weights = _weights(source)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[_KillAt(1)])
    assert "weights from" in (tmp_path / "tuned" / "train.log").read_text()
    moved = _weights(tmp_path / "tuned" / "last.safetensors")  # one Adam step (lr 1e-3) from the source's weights
    params = [k for k, v in weights.items() if v.is_floating_point() and ".running_" not in k]
    assert max((moved[k] - weights[k]).abs().max().item() for k in params) <= 1.01e-3
    source.rename(tmp_path / "gone.safetensors")  # a resumed run takes its weights from its state
    assert train(cfg, resume=tmp_path / "tuned")["steps"] == 2

    model = StackedHourglass(nstack=1, nfeat=16, njoints=5, depth=2)
    fresh_values = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = apply_pretrained(model, read_pretrained(tmp_path / "gone.safetensors", cfg.model))
    assert fresh == ["heads.0.heatmap"]  # 16 joints in the source, 5 here
    for k, v in model.state_dict().items():
        want = fresh_values[k] if k.startswith("heads.0.heatmap.") else weights[k]
        assert torch.equal(v, want), k
    with pytest.raises(ValueError, match=r"nfeat 16 \(the config: 32\).*--set model.nfeat=16"):
        read_pretrained(tmp_path / "gone.safetensors", tiny(tmp_path, "model.nfeat=32").model)
    with pytest.raises(FileNotFoundError, match="model.init: checkpoint not found"):
        train(tiny(tmp_path, f"model.init={tmp_path / 'missing.pt'}", name="nothing"))
    assert not (tmp_path / "nothing").exists()  # refused before the work dir was made
    from_state = read_pretrained(tmp_path / "tuned" / "last.state.pt", cfg.model)  # a state's weights will do
    assert torch.equal(from_state["heads.0.heatmap.weight"], _weights(tmp_path / "tuned" / "last.safetensors")[
        "heads.0.heatmap.weight"])


def test_a_run_that_cannot_start_changes_nothing_and_a_busy_work_dir_is_refused(tmp_path, capsys):
    from hgfast.cli import main
    from hgfast.train.rundir import LOCK_FILE

    cfg = tiny(tmp_path, "steps=2")
    train(cfg)
    work = Path(cfg.workdir)
    saved = (work / "config.yaml").read_text()
    argv = ["train", "--workdir", str(work), "--resume"]
    assert main(argv + ["--set", "batch_size=64", "--set", "steps=4"]) == 2  # found after the state is read
    assert "smaller than one batch" in capsys.readouterr().err
    assert (work / "config.yaml").read_text() == saved  # a plain --resume later reads what the run used
    holder = subprocess.Popen(  # another process's run holds the work dir
        [sys.executable, "-c", "import sys; from pathlib import Path; from hgfast.train.rundir import workdir_lock\n"
         "with workdir_lock(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()", str(work)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert main(argv + ["--set", "steps=4"]) == 2
        assert f"is in use by another hgfast train (it holds {work / LOCK_FILE})" in capsys.readouterr().err
    finally:
        holder.communicate("")
    assert holder.returncode == 0 and not (work / LOCK_FILE).exists()
    assert main(argv + ["--set", "steps=3"]) == 0 and not (work / LOCK_FILE).exists()
    (work / "eval.json").mkdir()
    assert main(argv + ["--set", "steps=4"]) == 2
    assert "eval.json must be file(s) the run writes, not folder(s)" in capsys.readouterr().err
    (work / "eval.json").rmdir()
    if os.geteuid() != 0:  # root writes anywhere
        work.chmod(0o500)
        try:
            assert main(argv + ["--set", "steps=4"]) == 2
            assert "Permission denied" in capsys.readouterr().err
        finally:
            work.chmod(0o700)


def test_yaml_and_set_values_are_read_as_written(tmp_path):
    assert resolve(overrides=["workdir=007", "model.init=0010"]).workdir == "007"
    assert resolve(overrides=["model.init=0010"]).model.init == "0010"  # a text key's value, taken as written
    (tmp_path / "twice.yaml").write_text("model:\n  nstack: 1\nmodel:\n  nfeat: 16\n")
    with pytest.raises(ConfigError, match="found the key 'model' twice"):
        resolve(path=tmp_path / "twice.yaml")
    (tmp_path / "number.yaml").write_text("workdir: 007\n")
    with pytest.raises(ConfigError, match="'workdir' expects text; YAML read a number, 7, .* quote it"):
        resolve(path=tmp_path / "number.yaml")
    for key, message in (("model.nfeat=15", "'model.nfeat' must be even"), ("seed=1e20", "'seed' must be below 2")):
        with pytest.raises(ConfigError, match=message):
            resolve(overrides=[key])
    for key, message in (("workdir=", "'workdir' is empty"), ("threads=100000", "'threads' must be at most 1024"),
                         ("data.oks_sigmas=[0.1, -1]", "'data.oks_sigmas' must hold numbers > 0")):
        with pytest.raises(ConfigError, match=message):
            resolve(overrides=[key, "data.dataset=coco", "data.root=/c"] if "oks" in key else [key])
    (tmp_path / "empty.yaml").write_text("model:\nsteps: 3\n")  # a section left empty
    assert resolve(path=tmp_path / "empty.yaml").steps == 3
    (tmp_path / "quoted.yaml").write_text("workdir: '007'\n")
    assert resolve(path=tmp_path / "quoted.yaml").workdir == "007"
    for key in ("data.root=/data/mpii", "data.train_annotations=a.h5", "data.category_id=1"):
        with pytest.raises(ConfigError, match=f"'{key.split('=')[0]}' applies to .* not data.dataset='synthetic': "
                                              f"it would be ignored"):
            resolve(overrides=[key])
