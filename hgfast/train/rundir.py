"""A run's work dir: the files and step folders it writes, clearing or carrying them over, ``train.log`` and
``metrics.csv``."""
from __future__ import annotations

import contextlib
import csv
import errno
import logging
import sys
from pathlib import Path

from ..checkpoint import atomic_path
from .state import STATE_FILE

log = logging.getLogger("hgfast.train")


# What a run writes in its work dir (and ``hgfast eval --workdir``): files, and folders of step files.
RUN_FILES = ("config.yaml", "train.log", "metrics.csv", STATE_FILE, "last.safetensors", "best.safetensors",
             "eval.json", "eval.jpg", "eval_detections.json", "eval_detections.jpg")


RUN_FOLDERS = {"val": "step_*.json", "vis": "step_*.jpg"}


# The files that show a work dir holds a run's results (config.yaml may be the user's own; a log and metrics alone
# are what a run that failed before its first checkpoint leaves, which its rerun replaces).
_RUN_MARKS = (STATE_FILE, "best.safetensors", "last.safetensors")


LOCK_FILE = ".hgfast.lock"  # held (a POSIX lock) while a run writes the work dir; removed when it ends


@contextlib.contextmanager
def workdir_lock(workdir: Path):
    """Hold the work dir's lock for the run: a second run in it (on this machine) is refused while it is held
    (BlockingIOError); ``LOCK_FILE`` is removed when the run ends. A POSIX lock, not inherited by DataLoader
    workers; without ``fcntl`` (not POSIX) there is none."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = workdir / LOCK_FILE
    with open(path, "a") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:  # held elsewhere; other errors: a file system without locks (ENOLCK), run without
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise BlockingIOError(f"{workdir} is in use by another hgfast train (it holds {path}): wait for "
                                      f"that run to end, or choose another --workdir") from None
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def check_run_paths(workdir: Path) -> None:
    """IsADirectoryError / NotADirectoryError where a file the run writes is a folder, or a folder of its step
    files is a file (refused before training, not at the first checkpoint)."""
    folders = [name for name in RUN_FILES if (workdir / name).is_dir()]
    if folders:
        raise IsADirectoryError(f"{workdir}: {', '.join(folders)} must be file(s) the run writes, not folder(s)")
    files = [name for name in RUN_FOLDERS if (workdir / name).exists() and not (workdir / name).is_dir()]
    if files:
        raise NotADirectoryError(f"{workdir}: {', '.join(files)} must be the folder(s) of the run's step files, not "
                                 f"file(s)")


def run_outputs(workdir: Path) -> list[str]:
    """The ``_RUN_MARKS`` and step folders of ``RUN_FOLDERS`` in ``workdir`` that hold files."""
    found = [name for name in _RUN_MARKS if (workdir / name).is_file()]
    return found + [f"{folder}/" for folder, pattern in RUN_FOLDERS.items() if any((workdir / folder).glob(pattern))]


def clear_run(workdir: Path) -> list[str]:
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


def remove_stale_temporaries(workdir: Path) -> list[str]:
    """Remove what writes killed midway (``kill -9``) left of ``atomic_path``'s temporaries of the run's files."""
    stale = [p for name in RUN_FILES for p in workdir.glob(f".{name}.*.tmp")]
    stale += [p for folder, pattern in RUN_FOLDERS.items() for p in (workdir / folder).glob(f".{pattern}.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return [str(p.relative_to(workdir)) for p in stale]


def carry_best(source: Path, workdir: Path, best: float) -> float | None:
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


def close_logging() -> None:
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def setup_logging(workdir: Path, is_main: bool) -> None:
    log.setLevel(logging.INFO)
    close_logging()
    if is_main:
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
        for handler in (logging.FileHandler(workdir / "train.log"), logging.StreamHandler(sys.stderr)):
            handler.setFormatter(fmt)
            log.addHandler(handler)
    log.propagate = False


class Metrics:
    """``metrics.csv``: on opening, rows after ``step`` (the starting step: 0 for a fresh run, the checkpoint's
    step on resume, so rows a crashed run wrote after its last checkpoint) are dropped; then rows are appended. A
    row that is not one of its rows (a step that is not an int, more fields than ``COLUMNS``, bad CSV) is a
    ValueError naming the file and the line."""

    COLUMNS = ["step", "epoch", "lr", "loss", "images_per_s", "elapsed_s", "val_pck", "val_pck_threshold", "val_ap"]

    def __init__(self, path: Path, step: int):
        self.path = path
        rows = []
        if path.exists():
            with open(path, newline="") as f:
                reader = csv.reader(f)
                try:
                    next(reader, None)  # the header
                    for r in reader:
                        if r and len(r) > len(self.COLUMNS):
                            raise ValueError(f"{len(r)} fields, not at most {len(self.COLUMNS)}")
                        if r and int(r[0]) <= step:  # (an older run's rows lack the newer columns: padded)
                            rows.append(r + [""] * (len(self.COLUMNS) - len(r)))
                except (ValueError, csv.Error) as exc:
                    raise ValueError(f"{path}, line {reader.line_num}: not a row of metrics.csv ({exc}); fix or "
                                     f"remove that line") from None
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([self.COLUMNS] + rows)

    def write(self, **row) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.COLUMNS])
