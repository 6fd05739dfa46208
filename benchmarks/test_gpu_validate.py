"""gpu_validate.sh's plumbing, with a stand-in nvidia-smi: a benchmark stage writes its JSON, summary.md and
logs.tar.gz under $OUT, and a stage cut short by its deadline still writes the cases that finished."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "gpu_validate.sh"


def _run(tmp_path, *stages, more_stand_ins=(), **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_ins = (("nvidia-smi", "echo 'NVIDIA H200'"), ("python3", f'exec "{sys.executable}" "$@"'),
                 ("compute-sanitizer",
                  'echo "$PYTORCH_NO_CUDA_MEMORY_CACHING $*" >> "$LOGS/sanitizer-calls.txt"; echo "ERROR SUMMARY: 0"'),
                 *more_stand_ins)
    for name, body in stand_ins:
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")  # python3: this interpreter (its venv included)
        (bin_dir / name).chmod(0o755)
    out = tmp_path / "out"
    # not an xdist worker's variables: the script's pytest would take itself for a worker, and pytest-benchmark
    # would then skip the timing (this test failed under pytest -n 2)
    outer = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env = {**outer, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OUT": str(out),
           "LOGS": str(tmp_path / "logs"), **env}
    proc = subprocess.run(["bash", str(SCRIPT), *stages], cwd=SCRIPT.parent.parent, env=env, capture_output=True,
                          text=True, timeout=300)
    return proc, out


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_bench_stage_writes_results_summary_and_logs(tmp_path):
    proc, out = _run(tmp_path, "bench", BENCH_K="ceiling", BENCH_TAG="smoke")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (results,) = out.glob("NVIDIA-H200-*-smoke.json")
    assert {b["group"] for b in json.loads(results.read_text())["benchmarks"]} == {"ceiling: copy", "ceiling: matmul"}
    summary = (out / "summary.md").read_text()
    assert "(commit not given) on NVIDIA-H200" in summary and "bench smoke rc=0" in summary
    assert "Ceilings measured in this run: copy" in summary  # the report of the JSON so far
    assert not (out / "report.png").exists()  # only ceiling cases: nothing to chart, and no failure either
    with tarfile.open(out / "logs.tar.gz") as tar:
        assert "./bench-smoke.log" in tar.getnames()
    assert len(list(out.iterdir())) <= 8  # the device tool brings back at most 8 files


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_a_stage_past_the_deadline_is_cut_and_reported(tmp_path):
    proc, out = _run(tmp_path, "bench", BENCH_K="ceiling", BENCH_TAG="late", DEADLINE="1")
    assert proc.returncode == 0
    assert "bench late rc=124" in (out / "summary.md").read_text()  # timeout's status: cut at the limit


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_sanitize_stage_runs_each_tool_within_its_share(tmp_path):
    """The three sanitizer runs split the stage's 200 s (a third, half of the rest, the rest: a stand-in timeout
    logs each limit) and run without PyTorch's caching allocator; the commit given to the call heads the summary."""
    timeout = ("timeout", 'echo "$5" >> "$LOGS/limits.txt"; shift 5; exec "$@"')  # timeout -s INT -k 15 T CMD...
    proc, out = _run(tmp_path, "sanitize", more_stand_ins=[timeout], HGFAST_COMMIT="abc1234")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first, second, third = (int(t) for t in (tmp_path / "logs" / "limits.txt").read_text().split())
    assert first == 66 and 99 <= second <= 100 and 198 <= third <= 200
    calls = (tmp_path / "logs" / "sanitizer-calls.txt").read_text().splitlines()
    assert [c.split()[:3] for c in calls] == [["1", "--tool", t] for t in ("memcheck", "racecheck", "memcheck")]
    summary = (out / "summary.md").read_text()
    assert summary.count("ERROR SUMMARY: 0") == 3 and "sanitizer racecheck rc=0" in summary
    assert summary.startswith("# hgfast abc1234 on NVIDIA-H200")
