"""Skeletons: joint names, the joint order after a horizontal flip, limbs for drawing and PCK column groups.

``MPII_SKELETON`` is the 16-joint skeleton of MPII Human Pose (and of the built-in synthetic figures).
``Skeleton.from_names`` builds one for any keypoint set (a COCO category, a custom dataset) from its joint names: a
name whose words include ``left``/``right`` (or ``l``/``r``, e.g. ``l_ankle``) pairs with the same name on the other
side, so the flip permutation, limb sides and PCK groups (``left_knee`` + ``right_knee`` → "knee") follow.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

from ..ops import MPII_FLIP_PERMUTATION, flip_permutation
from ..ops.flip import checked_flip_permutation

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
_LOWER_BODY = {"hip", "hips", "pelvis", "knee", "knees", "ankle", "ankles", "foot", "feet", "heel", "heels", "toe",
               "toes", "leg", "legs", "thigh", "shin", "calf"}
_OTHER = {"l": "r", "r": "l"}


def name_words(name: str) -> list[str]:
    """The lower-case words of a joint name, split at non-alphanumerics and at camel case: ``left_knee``,
    ``Left Knee``, ``LeftKnee`` and ``LKnee`` are ``[left|l, knee]``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=^[LR])(?=[A-Z][a-z])", " ", name)
    return [w for w in re.split(r"[^0-9a-z]+", spaced.lower()) if w]


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
        try:  # normalise the types (lists from JSON, numpy ints), so equal skeletons compare equal
            names = tuple(str(n) for n in self.names)
            perm = None if self.flip_permutation is None else tuple(int(p) for p in self.flip_permutation)
            limbs = tuple((int(a), int(b), str(side)) for a, b, side in self.limbs)
            groups = {str(g): tuple(int(j) for j in js) for g, js in dict(self.groups).items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a valid skeleton description: {exc}") from exc
        for key, value in (("names", names), ("flip_permutation", perm), ("limbs", limbs), ("groups", groups)):
            object.__setattr__(self, key, value)
        k = len(names)
        if k < 1 or len(set(names)) != k:
            raise ValueError(f"skeleton names must be non-empty and distinct, got {list(names)}")
        if perm is not None:
            checked_flip_permutation(perm, k, name="flip_permutation")
        for a, b, side in limbs:
            if not (0 <= a < k and 0 <= b < k) or side not in ("r", "l", "c"):
                raise ValueError(f"limb {(a, b, side)}: joints must be in range({k}) and side 'r', 'l' or 'c'")
        for name, joints in groups.items():
            if not joints or not all(0 <= j < k for j in joints):
                raise ValueError(f"PCK group {name!r}: joints {list(joints)} must be in range({k})")

    def __hash__(self) -> int:
        return hash((self.names, self.flip_permutation, self.limbs, tuple(self.groups.items())))

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def lower_body(self) -> tuple[bool, ...]:
        """Per joint: whether its name names a lower-body part (hip, knee, ankle, pelvis, foot, ...; the split
        half-body augmentation crops by: HRNet's and mmpose's for MPII and COCO)."""
        return tuple(bool(_LOWER_BODY.intersection(name_words(n))) for n in self.names)

    @classmethod
    def from_names(cls, names, edges=(), flip_pairs=None) -> "Skeleton":
        """A skeleton from joint ``names``, limb ``edges`` (0-based (a, b) pairs) and ``flip_pairs`` ((a, b)
        pairs swapped by a flip; ``None``: the left/right pairs found in the names (``name_words``), with a warning
        for a joint that names a side but has no partner; other joints map to themselves)."""
        names = tuple(str(n) for n in names)
        k = len(names)
        words = [name_words(n) for n in names]
        sides = [next((_SIDES[w] for w in ws if w in _SIDES), "c") for ws in words]
        keys = [[_SIDES.get(w, w) for w in ws] for ws in words]  # side words as "l" / "r": left_eye pairs r_eye
        if flip_pairs is None:
            index: dict[str, int] = {}
            for i, ws in enumerate(keys):
                key = "_".join(ws)
                if key in index:
                    raise ValueError(f"joint names {names[index[key]]!r} and {names[i]!r} read the same ({key}); "
                                     f"rename one or give flip_pairs")
                index[key] = i
            partner = {i: index.get("_".join(_OTHER.get(w, w) for w in ws)) for i, ws in enumerate(keys)
                       if sides[i] != "c"}
            lonely = [names[i] for i, j in partner.items() if j is None]
            if lonely:
                warnings.warn(f"joints {lonely} name a side but no joint has the other side's name: a flip leaves "
                              f"them in place (give flip_pairs to pair them)", stacklevel=2)
            flip_pairs = sorted({tuple(sorted((i, j))) for i, j in partner.items() if j is not None})
        try:
            perm = flip_permutation(flip_pairs, k)
        except ValueError as exc:
            raise ValueError(f"flip_pairs: {exc}") from None
        limbs = []
        for a, b in edges:  # a limb takes its joints' side; one to a centre joint takes the other's; left-right: "c"
            a, b = int(a), int(b)
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"skeleton edge ({a}, {b}): joints must be in range({k})")
            pair = {sides[a], sides[b]} - {"c"}
            limbs.append((a, b, pair.pop() if len(pair) == 1 else "c"))
        groups: dict[str, list[int]] = {}
        for i, ws in enumerate(words):
            groups.setdefault("_".join(w for w in ws if w not in _SIDES) or names[i], []).append(i)
        return cls(names, perm, tuple(limbs), groups)

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
    def from_model(cls, model) -> "Skeleton | None":
        """The skeleton stored with the checkpoint ``model`` was loaded from (``StackedHourglass.from_checkpoint``
        keeps it where it fits the model: ``checkpoint_skeleton``), or None."""
        stored = getattr(model, "checkpoint_skeleton", None)
        return None if stored is None else cls.from_dict(stored)

    @classmethod
    def from_dict(cls, d: dict) -> "Skeleton":
        if not isinstance(d, dict) or "names" not in d:
            raise ValueError(f"not a valid skeleton description (a dict with 'names'): {d!r}")
        return cls(d["names"], d.get("flip_permutation"), d.get("limbs", ()), d.get("groups", {}))


MPII_SKELETON = Skeleton(JOINT_NAMES, MPII_FLIP_PERMUTATION, LIMBS, PCKH_GROUPS)

