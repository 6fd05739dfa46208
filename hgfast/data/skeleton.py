"""Skeletons: joint names, the joint order after a horizontal flip, limbs for drawing and PCK column groups.

``MPII_SKELETON`` is the 16-joint skeleton of MPII Human Pose (and of the built-in synthetic figures).
``Skeleton.from_names`` builds one for any keypoint set (a COCO category, a custom dataset) from its joint names: a
name whose words include ``left``/``right`` (or ``l``/``r``, e.g. ``l_ankle``) pairs with the same name on the other
side, so the flip permutation, limb sides and PCK groups (``left_knee`` + ``right_knee`` → "knee") follow.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..ops import MPII_FLIP_PERMUTATION

JOINT_NAMES = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
               "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist")
NUM_JOINTS = len(JOINT_NAMES)

# (joint a, joint b, side) with side "r", "l" or "c" (centre); used for drawing skeletons.
LIMBS = ((0, 1, "r"), (1, 2, "r"), (2, 6, "r"), (3, 6, "l"), (3, 4, "l"), (4, 5, "l"), (6, 7, "c"), (7, 8, "c"),
         (8, 9, "c"), (10, 11, "r"), (11, 12, "r"), (12, 7, "r"), (7, 13, "l"), (13, 14, "l"), (14, 15, "l"))

# PCKh table columns as the peers' tables (bearpaw's eval_PCKh, HRNet, mmpose) report them: "head" is the head
# top alone, the others a left/right pair. The 14-joint mean (Tompson et al.) is every joint but pelvis and thorax,
# so it includes the upper neck, which has no column.
PCKH_GROUPS = {"head": (9,), "shoulder": (12, 13), "elbow": (11, 14), "wrist": (10, 15),
               "hip": (2, 3), "knee": (1, 4), "ankle": (0, 5)}
PCKH_JOINTS = tuple(k for k in range(NUM_JOINTS) if JOINT_NAMES[k] not in ("pelvis", "thorax"))

_SIDES = {"left": "l", "l": "l", "right": "r", "r": "r"}
_OTHER = {"left": "right", "right": "left", "l": "r", "r": "l"}


@dataclass(frozen=True)
class Skeleton:
    """``names`` (K,); ``flip_permutation``: joint order after a horizontal flip (an involution of range(K)), or
    ``None`` where unknown (flip augmentation and flip testing then refuse to run); ``limbs``: (a, b, side) with side
    "r", "l" or "c"; ``groups``: PCK table column → joint indices."""

    names: tuple[str, ...]
    flip_permutation: tuple[int, ...] | None = None
    limbs: tuple[tuple[int, int, str], ...] = ()
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self):
        k = len(self.names)
        if k < 1 or len(set(self.names)) != k:
            raise ValueError(f"skeleton names must be non-empty and distinct, got {list(self.names)}")
        perm = self.flip_permutation
        if perm is not None and (sorted(perm) != list(range(k)) or any(perm[p] != i for i, p in enumerate(perm))):
            raise ValueError(f"flip_permutation must swap pairs of range({k}) (an involution), got {list(perm)}")
        for a, b, side in self.limbs:
            if not (0 <= a < k and 0 <= b < k) or side not in ("r", "l", "c"):
                raise ValueError(f"limb {(a, b, side)}: joints must be in range({k}) and side 'r', 'l' or 'c'")
        for name, joints in self.groups.items():
            if not joints or not all(0 <= j < k for j in joints):
                raise ValueError(f"PCK group {name!r}: joints {list(joints)} must be in range({k})")

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @classmethod
    def from_names(cls, names, edges=(), flip_pairs=None) -> "Skeleton":
        """A skeleton from joint ``names``, limb ``edges`` (0-based (a, b) pairs) and ``flip_pairs`` ((a, b)
        pairs swapped by a flip; default: the left/right pairs found in the names, other joints map to
        themselves)."""
        names = tuple(str(n) for n in names)
        words = [re.split(r"[^0-9a-z]+", n.lower()) for n in names]
        sides = [next((_SIDES[w] for w in ws if w in _SIDES), "c") for ws in words]
        if flip_pairs is None:
            index = {"_".join(ws): i for i, ws in enumerate(words)}
            flip_pairs = {tuple(sorted((i, index["_".join(_OTHER.get(w, w) for w in ws)]))) for i, ws in
                          enumerate(words) if sides[i] != "c" and "_".join(_OTHER.get(w, w) for w in ws) in index}
        perm = list(range(len(names)))
        for a, b in flip_pairs:
            a, b = int(a), int(b)
            if not (0 <= a < len(names) and 0 <= b < len(names)) or perm[a] != a or perm[b] != b:
                raise ValueError(f"flip_pairs: ({a}, {b}) must be two joints of range({len(names)}) in no other pair")
            perm[a], perm[b] = b, a
        limbs = []
        for a, b in edges:  # a limb takes its joints' side; one to a centre joint takes the other's; left-right: "c"
            a, b = int(a), int(b)
            if not (0 <= a < len(names) and 0 <= b < len(names)):
                raise ValueError(f"skeleton edge ({a}, {b}): joints must be in range({len(names)})")
            pair = {sides[a], sides[b]} - {"c"}
            limbs.append((a, b, pair.pop() if len(pair) == 1 else "c"))
        groups: dict[str, list[int]] = {}
        for i, ws in enumerate(words):
            groups.setdefault("_".join(w for w in ws if w and w not in _SIDES) or names[i], []).append(i)
        return cls(names, tuple(perm), tuple(limbs), {g: tuple(js) for g, js in groups.items()})

    @classmethod
    def for_joints(cls, k: int) -> "Skeleton":
        """MPII's skeleton for 16 joints; ``joint_0`` ... ``joint_<k-1>`` (flip unknown, no limbs) otherwise."""
        return MPII_SKELETON if k == NUM_JOINTS else cls(tuple(f"joint_{i}" for i in range(k)))

    def to_dict(self) -> dict:
        """JSON-ready (stored in checkpoints); ``Skeleton.from_dict`` reads it back."""
        return {"names": list(self.names), "flip_permutation": None if self.flip_permutation is None else
                list(self.flip_permutation), "limbs": [list(limb) for limb in self.limbs],
                "groups": {g: list(js) for g, js in self.groups.items()}}

    @classmethod
    def from_checkpoint(cls, path) -> "Skeleton | None":
        """The skeleton ``StackedHourglass.save`` stored with a safetensors file; None if it holds none."""
        from ..checkpoint import read_metadata

        stored = read_metadata(path).get("skeleton")
        return None if stored is None else cls.from_dict(stored)

    @classmethod
    def from_dict(cls, d: dict) -> "Skeleton":
        try:
            perm = d.get("flip_permutation")
            return cls(tuple(d["names"]), None if perm is None else tuple(int(p) for p in perm),
                       tuple((int(a), int(b), str(s)) for a, b, s in d.get("limbs", ())),
                       {str(g): tuple(int(j) for j in js) for g, js in d.get("groups", {}).items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a valid skeleton description: {exc}") from exc


MPII_SKELETON = Skeleton(JOINT_NAMES, MPII_FLIP_PERMUTATION, LIMBS, PCKH_GROUPS)

