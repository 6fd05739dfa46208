"""report.py and targets.py: tables from the committed CPU results, merged parts of a run, the issue-7 verdicts."""
import json
from pathlib import Path

import pytest

import report
from targets import TARGETS, Target, evaluate

RESULTS = Path(__file__).parent / "results"
H100 = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130", "triton": "3.6.0", "cuda": "13.0"}


def results_file(path: Path, rows: list[tuple[str, str, float, dict]], date: str, **env) -> Path:
    """A pytest-benchmark JSON file with one benchmark per (group, impl, median_ms, extra_info)."""
    benches = [{"group": g, "name": f"test[{impl}]", "param": impl, "stats": {"median": ms / 1e3},
                "extra_info": {"impl": impl, "median_ms": ms, **extra}} for g, impl, ms, extra in rows]
    path.write_text(json.dumps({"machine_info": {"hgfast": {**H100, "date": date, **env}}, "benchmarks": benches}))
    return path


def test_renders_the_committed_cpu_results(tmp_path):
    # the latest full CPU run (results files of one suite, e.g. *-host.json, sort after it)
    cpu = [p for p in sorted(RESULTS.glob("cpu-*.json")) if "gaussian_heatmaps" in p.read_text()][-1]
    out = tmp_path / "table.md"
    assert report.main([str(cpu), "--markdown", str(out), "--png", str(tmp_path / "chart.png")]) == 0
    text = out.read_text()
    assert text.startswith("Device: CPU") and "| gaussian_heatmaps b256x16x64x64 cpu | hgfast |" in text
    assert "issue-7 target" not in text  # no GPU cases, no verdicts
    assert (tmp_path / "chart.png").stat().st_size > 0


def test_parts_of_one_run_merge_and_the_later_part_wins(tmp_path):
    ops = results_file(tmp_path / "ops.json", [
        ("ceiling: copy", "copy", 1.0, {"gb_per_s": 3000.0}),
        ("upsample_add 64x64 b32 c256", "fused", 0.1, {"gb_per_s": 2550.0, "rel_error": 0.0012}),
        ("upsample_add 64x64 b32 c256", "eager", 0.3, {"gb_per_s": 850.0}),
        ("residual 64x64 b32 fwd train-BN", "fused", 9.0, {})], "2026-12-01T10:00:00")
    again = results_file(tmp_path / "again.json", [
        ("residual 64x64 b32 fwd train-BN", "fused", 0.2, {}),
        ("residual 64x64 b32 fwd train-BN", "compile", 0.25, {})], "2026-12-01T10:20:00")
    out = tmp_path / "table.md"
    report.main([str(ops), str(again), "--markdown", str(out), "--png", str(tmp_path / "c.png")])
    text = out.read_text()
    assert "2026-12-01T10:00:00 .. 2026-12-01T10:20:00" in text
    assert "| residual 64x64 b32 fwd train-BN | fused | 0.200 |" in text and "9.000" not in text
    assert "| upsample_add 64x64 b32 c256 | fused | 0.100 | 3.00x |  |  | 2550.0 |  | 85 | 1.2e-03 |" in text
    assert "| `upsample_add` 64x64, b32, 256 ch | >= 80 % of copy bandwidth | fused 100.0 µs; 2550 GB/s = 85 % " \
           "of copy (3000 GB/s) | met |" in text
    assert "| residual 64x64, b32, train BN, forward | <= 170 µs, <= 0.75x compile | fused 200.0 µs; 0.80x " \
           "compile (250.0 µs) | missed: 30 µs over 170 µs; 0.80x compile > 0.75x: 7 % too slow |" in text
    assert "| 8-stack inference, b32, bf16 | <= 0.6x compile |  | not measured |" in text
    # The contenders of one group written by two parts (the compile stage's file beside the model stage's).
    model = results_file(tmp_path / "model.json", [
        ("model inference 8 stacks b32 torch.bfloat16", "eager", 30.0, {}),
        ("model inference 8 stacks b32 torch.bfloat16", "fused-graph", 10.0, {})], "2026-12-01T10:30:00")
    compiled = results_file(tmp_path / "compile.json", [
        ("model inference 8 stacks b32 torch.bfloat16", "compile", 20.0, {})], "2026-12-01T10:40:00")
    report.main([str(compiled), str(model), "--markdown", str(out), "--png", str(tmp_path / "c.png")])
    assert "| 8-stack inference, b32, bf16 | <= 0.6x compile | fused-graph 10000.0 µs; 0.50x compile (20000.0 µs) " \
           "| met |" in out.read_text()


def test_parts_from_different_devices_are_refused(tmp_path, capsys):
    a = results_file(tmp_path / "a.json", [("ceiling: copy", "copy", 1.0, {})], "2026-12-01")
    b = results_file(tmp_path / "b.json", [("ceiling: copy", "copy", 1.0, {})], "2026-12-02", device="NVIDIA H200")
    with pytest.raises(SystemExit):
        report.main([str(a), str(b)])
    assert "device 'NVIDIA H200'" in capsys.readouterr().err


def test_target_verdicts():
    step = Target("step", "g", max_ratio=(("compile", 0.65), ("eager", 0.5)))
    rows = [{"impl": "fused", "median_ms": 6.0}, {"impl": "fused-graph", "median_ms": 5.0},
            {"impl": "eager-graph", "median_ms": 4.0}, {"impl": "compile", "median_ms": 10.0},
            {"impl": "eager", "median_ms": 12.0}]
    # the faster hgfast contender counts; eager-graph is not hgfast
    assert evaluate(step, rows, None) == ("fused-graph 5000.0 µs; 0.50x compile (10000.0 µs); 0.42x eager "
                                          "(12000.0 µs)", "met")
    assert evaluate(step, rows[:2] + rows[3:4], None)[1] == "incomplete: no eager contender"
    bandwidth = Target("bw", "g", min_copy_share=0.7)
    assert evaluate(bandwidth, [{"impl": "hgfast", "median_ms": 1.0, "gb_per_s": 1800.0}], 3000.0)[1] == \
        "missed: 10 points below 70 %"
    assert evaluate(bandwidth, [{"impl": "hgfast", "median_ms": 1.0, "gb_per_s": 1800.0}], None)[1] == \
        "incomplete: copy ceiling not in these results"
    assert evaluate(bandwidth, [{"impl": "eager", "median_ms": 1.0}], 3000.0) == ("", "not measured")


def test_every_target_names_a_case_the_gpu_benchmarks_make():
    """Each target's group is the benchmark's own group template (found verbatim in test_bench_*.py) filled in with
    the issue-7 shape, so a renamed group fails here instead of turning a target into "not measured"."""
    import torch

    sources = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_bench_*.py"))
    shape = dict(size=64, BATCH=32, CHANNELS=256, batch=32, K=16, nstack=8, dtype=torch.bfloat16, device="cuda",
                 bn="train")
    templates = {"upsample_add": ('f"upsample_add {size}x{size} b{BATCH} c{CHANNELS}"', {}),
                 "gaussian_heatmaps": ('f"gaussian_heatmaps b{batch}x{K}x64x64 cuda"', {"batch": 256}),
                 "argmax_decode": ("f\"argmax_decode b{batch}x{K}x64x64 {str(dtype).replace('torch.', '')} "
                                   "{device}\"", {"batch": 256}),
                 "residual 64x64 b32 fwd ": ("f\"residual {size}x{size} b{BATCH} {'fwd+bwd' if backward else 'fwd'} "
                                             "{bn}-BN\"", {"backward": False}),
                 "residual 64x64 b32 fwd+bwd": ("f\"residual {size}x{size} b{BATCH} {'fwd+bwd' if backward else "
                                                "'fwd'} {bn}-BN\"", {"backward": True}),
                 "model train step": ('f"model train step {nstack} stacks b{batch} {dtype}"', {}),
                 "model inference": ('f"model inference {nstack} stacks b{batch} {dtype}"', {})}
    for target in TARGETS:
        template, override = next(v for prefix, v in templates.items() if target.group.startswith(prefix))
        assert template in sources, template
        assert eval(template, {}, {**shape, **override}) == target.group
