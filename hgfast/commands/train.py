"""``hgfast train``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import add_config_args, fail, main_process, resolve_config

def _saved_config(resume: Path) -> Path | dict:
    """A resumed run's config: ``config.yaml`` beside its state (file or work dir), else the state's own."""
    from ..train.state import load_state, state_path

    saved = state_path(resume).parent / "config.yaml"
    return saved if saved.is_file() else load_state(resume).get("config") or {}


def _cmd_train(args) -> int:
    from ..train.config import Config, parse_set
    from ..train.loop import train
    from ..train.state import STATE_FILE, state_path

    try:  # --resume DIR|FILE: that run's folder is the work dir (unless --workdir), its config the base config
        resume = state_path(args.resume) if args.resume not in (None, "auto") else None
        top = {"model": {"fused": True} if args.fused else {}}
        workdir = args.workdir or parse_set(args.set or []).get("workdir")  # --set workdir= is --workdir
        if workdir or resume:
            top["workdir"] = str(workdir or resume.parent)
        if args.resume and args.config is None and args.preset is None:
            run = resume or Path(top.get("workdir", Config().workdir))
            args.config = _saved_config(run)
        cfg = resolve_config(args, **top)
    except (ValueError, FileNotFoundError) as exc:
        return fail("train", exc)
    state = Path(cfg.workdir) / STATE_FILE
    before = state.stat().st_mtime_ns if state.exists() else None
    try:
        summary = train(cfg, resume=(resume or Path(cfg.workdir)) if args.resume else None,
                        overwrite=args.overwrite)
    except KeyboardInterrupt:
        if not main_process():  # under torchrun the main process reports, once
            return 130
        if state.exists() and state.stat().st_mtime_ns != before:
            print(f"hgfast train: interrupted; state written to {state}; continue with hgfast train --workdir "
                  f"{cfg.workdir} --resume", file=sys.stderr)
        else:
            print(f"hgfast train: interrupted before a state was written"
                  f"{f' ({state} is unchanged)' if before is not None else ''}", file=sys.stderr)
        return 130
    except (ValueError, OSError, ArithmeticError) as exc:  # OSError: a folder not writable, a disk full, ...
        return fail("train", exc)
    if main_process():  # once for a torchrun run
        print(json.dumps(summary))
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a model (synthetic figures by default)")
    add_config_args(p)
    p.add_argument("--workdir", help="output folder (config key 'workdir')")
    p.add_argument("--resume", nargs="?", const="auto", help="continue from <workdir>/last.state.pt, or the "
                   "given work dir / state file (its folder is then the work dir unless --workdir); without a config "
                   "or preset, the run's config.yaml (else the state's config) is used; the model section, "
                   "optim.name, amp, data.input_size and data.input_norm must not change")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a work dir that holds an earlier run "
                   "(its checkpoints, config, log, metrics, val/ and vis/ step files and eval results are removed "
                   "first; nothing else); without it such a work dir is refused")
    p.add_argument("--fused", action="store_true", help="use the fused Triton model where it runs")
    p.set_defaults(func=_cmd_train)
