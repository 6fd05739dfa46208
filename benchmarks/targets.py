"""The issue-7 speed targets (H100, bf16, batch 32), checked against benchmark results: for each, what it asks,
what was measured, and whether it is met or by how much it is missed.

``check(groups, copy_ceiling)`` takes report.py's ``{group: [row, ...]}``; a target whose case is not in the results
is "not measured". Only hgfast contenders count for hgfast; where there are several (fused and fused-graph; hgfast
and hgfast-kernel, the op without its argument checks), the fastest one, named in the result.
"""
from __future__ import annotations

from dataclasses import dataclass

HGFAST = ("fused", "fused-graph", "hgfast", "hgfast-kernel")


@dataclass(frozen=True)
class Target:
    name: str
    group: str
    max_ms: float | None = None  # absolute time limit
    min_copy_share: float | None = None  # achieved GB/s over the measured copy GB/s
    max_ratio: tuple[tuple[str, float], ...] = ()  # (baseline impl, largest allowed hgfast/baseline time)

    def requirement(self) -> str:
        parts = []
        if self.min_copy_share is not None:
            parts.append(f">= {100 * self.min_copy_share:.0f} % of copy bandwidth")
        if self.max_ms is not None:
            parts.append(f"<= {1e3 * self.max_ms:.0f} µs")
        parts += [f"<= {ratio:g}x {base}" for base, ratio in self.max_ratio]
        return ", ".join(parts)


TARGETS = [
    Target("`upsample_add` 64x64, b32, 256 ch", "upsample_add 64x64 b32 c256", min_copy_share=0.80),
    Target("`gaussian_heatmaps` b256, 16 joints, 64x64", "gaussian_heatmaps b256x16x64x64 cuda", min_copy_share=0.70),
    Target("`argmax_decode` b256, 16 joints, 64x64, bf16", "argmax_decode b256x16x64x64 bfloat16 cuda",
           min_copy_share=0.70),
    Target("residual 64x64, b32, train BN, forward", "residual 64x64 b32 fwd train-BN", max_ms=0.170,
           max_ratio=(("compile", 0.75),)),
    Target("residual 64x64, b32, train BN, fwd+bwd", "residual 64x64 b32 fwd+bwd train-BN", max_ms=0.600,
           max_ratio=(("compile", 0.75),)),
    Target("8-stack training step, b32, bf16", "model train step 8 stacks b32 torch.bfloat16",
           max_ratio=(("compile", 0.65), ("eager", 0.5))),
    Target("8-stack inference, b32, bf16", "model inference 8 stacks b32 torch.bfloat16",
           max_ratio=(("compile", 0.6),)),
]


def evaluate(target: Target, rows: list[dict] | None, copy_ceiling: float | None) -> tuple[str, str]:
    """(what was measured, status): status is "met", "missed: ..." or "not measured"."""
    ours = sorted((r for r in rows or [] if r["impl"] in HGFAST), key=lambda r: r["median_ms"])
    if not ours:
        return "", "not measured"
    best = ours[0]
    measured = [f"{best['impl']} {1e3 * best['median_ms']:.1f} µs"]
    misses, unknown = [], []
    if target.min_copy_share is not None:
        gbs = best.get("gb_per_s")
        if gbs is None or not copy_ceiling:
            unknown.append("copy ceiling not in these results")
        else:
            share = gbs / copy_ceiling
            measured.append(f"{gbs:.0f} GB/s = {100 * share:.0f} % of copy ({copy_ceiling:.0f} GB/s)")
            if share < target.min_copy_share:
                misses.append(f"{100 * (target.min_copy_share - share):.0f} points below {100 * target.min_copy_share:.0f} %")
    if target.max_ms is not None and best["median_ms"] > target.max_ms:
        misses.append(f"{1e3 * (best['median_ms'] - target.max_ms):.0f} µs over {1e3 * target.max_ms:.0f} µs")
    for base, limit in target.max_ratio:
        ref = next((r["median_ms"] for r in rows if r["impl"] == base), None)
        if ref is None:
            unknown.append(f"no {base} contender")
            continue
        ratio = best["median_ms"] / ref
        measured.append(f"{ratio:.2f}x {base} ({1e3 * ref:.1f} µs)")
        if ratio > limit:
            misses.append(f"{ratio:.2f}x {base} > {limit:g}x: {100 * (ratio / limit - 1):.0f} % too slow")
    if misses:
        return "; ".join(measured), "missed: " + "; ".join(misses)
    return "; ".join(measured), ("incomplete: " + "; ".join(unknown)) if unknown else "met"


def markdown(groups: dict[str, list[dict]], copy_ceiling: float | None) -> str:
    """The targets table, or "" when none of the target cases is in the results (a CPU run)."""
    if not any(t.group in groups for t in TARGETS):
        return ""
    lines = ["| issue-7 target | requirement | measured | status |", "| --- | --- | --- | --- |"]
    for t in TARGETS:
        measured, status = evaluate(t, groups.get(t.group), copy_ceiling)
        lines.append(f"| {t.name} | {t.requirement()} | {measured} | {status} |")
    return "\n".join(lines) + "\n"
