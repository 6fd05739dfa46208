"""Turn pytest-benchmark JSON files into a markdown table and a PNG bar chart.

    python benchmarks/report.py RESULTS.json [MORE.json ...] [--markdown OUT.md] [--png OUT.png]

For every group: each implementation's median time, its speedup over the group's eager PyTorch, torch.compile
and numpy contenders where present, achieved GB/s and TFLOP/s, the percentage of the measured device ceiling
(the ``ceiling: copy`` and ``ceiling: matmul`` cases) and the relative error against the case's reference. Several files are the parts of one device's run that did not
fit one call (e.g. ops, then the 8-stack cases): they must name the same device and versions; a group measured in
two files is taken whole from the later one, so a group's contenders always come from one run. When the results
hold issue-7 cases (GPU), a second table checks them against the targets (targets.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from targets import markdown as targets_markdown

BASELINES = {"eager": ("eager", "torch-reference", "targets+F.mse_loss"), "torch.compile": ("compile",),
             "numpy": ("numpy-vectorised",)}


def load(path: Path) -> tuple[dict, dict[str, list[dict]]]:
    """Return (machine info, {group: [row, ...]}) with one row per benchmark: impl, median_ms and extra_info."""
    data = json.loads(path.read_text())
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info", {})
        median_ms = extra.get("median_ms") or bench["stats"]["median"] * 1e3
        groups[bench.get("group") or bench["name"]].append(
            {"impl": extra.get("impl", bench["param"] or bench["name"]), "median_ms": median_ms, **{
                k: v for k, v in extra.items() if k not in ("impl", "median_ms")}})
    return data.get("machine_info", {}), dict(groups)


def ceilings(groups: dict[str, list[dict]]) -> tuple[float | None, float | None]:
    """Measured copy GB/s and matmul TFLOP/s of this run, if it has the ceiling cases."""
    copy = groups.get("ceiling: copy", [{}])[0].get("gb_per_s")
    matmul = groups.get("ceiling: matmul", [{}])[0].get("tflop_per_s")
    return copy, matmul


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown(machine: dict, groups: dict[str, list[dict]]) -> str:
    env = machine.get("hgfast", {})
    copy_ceiling, mm_ceiling = ceilings(groups)
    lines = [f"Device: {env.get('device', machine.get('cpu', {}).get('brand_raw', '?'))}; torch {env.get('torch')}, "
             f"triton {env.get('triton')}, CUDA {env.get('cuda')}; {env.get('date', '')}.",
             f"Ceilings measured in this run: copy {_fmt(copy_ceiling, '.1f')} GB/s, "
             f"matmul {_fmt(mm_ceiling, '.3g')} TFLOP/s." if copy_ceiling or mm_ceiling else
             "Ceilings: not measured in this run (no `ceiling` cases), so no % of ceiling.", "",
             "| case | implementation | median ms | vs eager | vs torch.compile | vs numpy | GB/s | TFLOP/s "
             "| % of ceiling | rel. error |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for group, rows in groups.items():
        if group.startswith("ceiling:"):
            continue
        base = {name: next((r["median_ms"] for r in rows if r["impl"] in impls), None)
                for name, impls in BASELINES.items()}
        for row in sorted(rows, key=lambda r: r["median_ms"]):
            speedups = [_fmt(base[name] / row["median_ms"] if base[name] else None, ".2f") + ("x" if base[name] else "")
                        for name in BASELINES]
            gbs, tfs = row.get("gb_per_s"), row.get("tflop_per_s")
            if tfs is not None and mm_ceiling:
                pct = 100 * tfs / mm_ceiling
            elif gbs is not None and copy_ceiling:
                pct = 100 * gbs / copy_ceiling
            else:
                pct = None
            lines.append(f"| {group} | {row['impl']} | {row['median_ms']:.3f} | " + " | ".join(speedups) +
                         f" | {_fmt(gbs, '.1f')} | {_fmt(tfs, '.2f')} | {_fmt(pct, '.0f')} | "
                         f"{_fmt(row.get('rel_error'), '.1e')} |")
    return "\n".join(lines) + "\n"


def bar_chart(groups: dict[str, list[dict]], png: Path) -> bool:
    """Horizontal bars: each implementation's speedup over the slowest implementation of its group. False (and no
    file) when there is nothing to compare: only the ceiling cases."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values = [], []
    for group, rows in groups.items():
        if group.startswith("ceiling:"):
            continue
        slowest = max(r["median_ms"] for r in rows)
        for row in rows:
            labels.append(f"{group} | {row['impl']}")
            values.append(slowest / row["median_ms"])
    if not values:
        return False
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(labels) + 1.2))
    ax.barh(range(len(values)), values, color="tab:blue")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("speedup over the slowest implementation in the case (log scale)")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return True


def load_all(paths: list[Path]) -> tuple[dict, dict[str, list[dict]]]:
    """Merge the files of one device's run: (machine info with the dates of all parts, groups). Raises ValueError
    when the files name different devices or versions."""
    machine, groups, dates = {}, {}, []
    for path in paths:
        part_machine, part_groups = load(path)
        env = part_machine.get("hgfast", {})
        if machine:
            first = machine.get("hgfast", {})
            for key in ("device", "torch", "triton", "cuda"):
                if env.get(key) != first.get(key):
                    raise ValueError(f"{path} has {key} {env.get(key)!r}, {paths[0]} has {first.get(key)!r}: "
                                     f"one report per device and software")
        else:
            machine = part_machine
        dates.append(env.get("date", ""))
        for group, rows in part_groups.items():  # one group may span files (the compile contenders in another)
            kept = [r for r in groups.get(group, []) if r["impl"] not in {n["impl"] for n in rows}]
            groups[group] = kept + rows
    if len(paths) > 1:
        machine = {**machine, "hgfast": {**machine.get("hgfast", {}), "date": " .. ".join(sorted({min(dates),
                                                                                                max(dates)}))}}
    return machine, groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="pytest --benchmark-json files of one device")
    parser.add_argument("--markdown", type=Path, help="write the tables here (default: stdout)")
    parser.add_argument("--png", type=Path, help="bar chart path (default: the first RESULTS with .png)")
    args = parser.parse_args(argv)
    for path in args.results:
        if not path.is_file():
            parser.error(f"results file not found: {path}")
    try:
        machine, groups = load_all(args.results)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        parser.error(f"not a pytest-benchmark JSON file: {exc}")
    except ValueError as exc:
        parser.error(str(exc))
    table = markdown(machine, groups)
    checked = targets_markdown(groups, ceilings(groups)[0])
    if checked:
        table += "\n" + checked
    if args.markdown:
        args.markdown.write_text(table)
    else:
        sys.stdout.write(table)
    if not bar_chart(groups, args.png or args.results[0].with_suffix(".png")):
        print("report.py: only ceiling cases, no chart", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
