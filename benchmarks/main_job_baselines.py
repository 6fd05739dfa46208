"""What the main job's validation PCK is worth: the scores of an untrained model and of a constant mean pose on the
same 400 synthetic validation figures (the README's comparison).

    python benchmarks/main_job_baselines.py [--train-samples 2000] [--seeds 0 1 2]

Prints one JSON line per baseline with PCK@0.2 and @0.1 (mean over the 16 joints, as `hgfast eval` reports).
"""
from __future__ import annotations

import argparse
import json

import torch

from hgfast.data import build_dataset
from hgfast.eval import evaluate, pck_table
from hgfast.models import StackedHourglass
from hgfast.ops import heatmap_to_image
from hgfast.train.config import resolve


def _means(table: dict) -> dict:
    return {t: round(v["mean_weighted"], 4) for t, v in table["pck"].items()}


def untrained(cfg, val_set, seed: int) -> dict:
    torch.manual_seed(seed)
    m = cfg.model
    model = StackedHourglass(nstack=m.nstack, nfeat=m.nfeat, njoints=val_set.skeleton.num_joints, depth=m.depth)
    table, _ = evaluate(model, val_set, thresholds=cfg.thresholds())
    return _means(table)


def mean_pose(cfg, train_set, val_set, samples: int) -> dict:
    """The training figures' mean pose in crop pixels, put into every validation crop."""
    crops = [train_set[i] for i in range(samples)]
    kp = torch.stack([c["keypoints"] for c in crops])
    weight = torch.stack([c["annotated"] for c in crops])[..., None]
    pose = (kp * weight).sum(0) / weight.sum(0).clamp(min=1)  # (K, 2)
    val = [val_set[i] for i in range(len(val_set))]
    meta = {k: torch.stack([v[k] for v in val]) for k in ("center", "scale", "rotation", "joints", "annotated",
                                                          "normalize")}
    pred = heatmap_to_image(pose.expand(len(val), -1, -1), meta["center"], meta["scale"], meta["rotation"],
                            size=val_set.input_size)  # (H, W) of the crop
    table = pck_table(pred.numpy(), meta["joints"].numpy(), meta["annotated"].numpy(), meta["normalize"].numpy(),
                      cfg.thresholds(), skeleton=val_set.skeleton)
    return _means(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    cfg = resolve("cpu-small")
    train_set, val_set = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "val")
    for seed in args.seeds:
        print(json.dumps({"baseline": "untrained", "seed": seed, "pck": untrained(cfg, val_set, seed)}))
    print(json.dumps({"baseline": "mean pose", "train_samples": args.train_samples,
                      "pck": mean_pose(cfg, train_set, val_set, args.train_samples)}))


if __name__ == "__main__":
    main()
