"""The MPII 16-joint skeleton: joint names, limbs for drawing, and PCKh joint groups."""
from __future__ import annotations

JOINT_NAMES = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
               "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist")
NUM_JOINTS = len(JOINT_NAMES)


def joint_names(k: int) -> tuple[str, ...]:
    """MPII's names for 16 joints, ``joint_0`` ... ``joint_<k-1>`` for another skeleton."""
    return JOINT_NAMES if k == NUM_JOINTS else tuple(f"joint_{i}" for i in range(k))


# (joint a, joint b, side) with side "r", "l" or "c" (centre); used for drawing skeletons.
LIMBS = ((0, 1, "r"), (1, 2, "r"), (2, 6, "r"), (3, 6, "l"), (3, 4, "l"), (4, 5, "l"), (6, 7, "c"), (7, 8, "c"),
         (8, 9, "c"), (10, 11, "r"), (11, 12, "r"), (12, 7, "r"), (7, 13, "l"), (13, 14, "l"), (14, 15, "l"))

# PCKh table columns as the peers' tables (bearpaw's eval_PCKh, HRNet, mmpose) report them: "head" is the head
# top alone, the others a left/right pair. The 14-joint mean (Tompson et al.) is every joint but pelvis and thorax,
# so it includes the upper neck, which has no column.
PCKH_GROUPS = {"head": (9,), "shoulder": (12, 13), "elbow": (11, 14), "wrist": (10, 15),
               "hip": (2, 3), "knee": (1, 4), "ankle": (0, 5)}
PCKH_JOINTS = tuple(k for k in range(NUM_JOINTS) if JOINT_NAMES[k] not in ("pelvis", "thorax"))
