"""PCK / PCKh against hand-computed cases."""
import numpy as np
import pytest

from hgfast.data.skeleton import JOINT_NAMES, PCKH_JOINTS
from hgfast.eval import ALL_JOINTS, format_table, pck_correct, pck_table


def _case():
    """2 samples, normaliser 10: joint k of sample 0 is off by k/2 px along x; sample 1 is exact except joint 0
    (off by 20 px) and joint 15 (not annotated)."""
    gt = np.zeros((2, 16, 2))
    pred = gt.copy()
    pred[0, :, 0] = np.arange(16) / 2
    pred[1, 0] = [12.0, 16.0]  # distance 20
    mask = np.ones((2, 16))
    mask[1, 15] = 0
    return pred, gt, mask, np.array([10.0, 10.0])


def test_pck_correct_is_strict_unless_inclusive():
    pred, gt, _, norm = _case()
    strict = pck_correct(pred, gt, norm, 0.5)
    assert strict[0].tolist() == [k / 2 < 5 for k in range(16)]  # joint 10 sits exactly on 0.5: not counted
    assert pck_correct(pred, gt, norm, 0.5, inclusive=True)[0, 10]
    assert strict[1].tolist() == [False] + [True] * 15


def test_pck_distance_is_euclidean_over_each_samples_normaliser():
    """Offsets (3, 4), (0, 4), (1.5, 2): 5, 4 and 2.5 px (by the max norm 4, 4, 2; by L1 7, 4, 3.5); sample 1's
    normaliser is 4x sample 0's."""
    gt = np.array([[[10.0, 10.0]] * 3, [[50.0, 20.0]] * 3])
    pred = gt + np.array([[3.0, 4.0], [0.0, 4.0], [1.5, 2.0]])
    norm = np.array([10.0, 40.0])
    # sample 0 at 0.45 (4.5 px): the 4 and 2.5 px joints; at 0.3 (3 px): the 2.5 px one; sample 1 (18, 12 px): all
    assert pck_correct(pred, gt, norm, 0.45).tolist() == [[False, True, True], [True, True, True]]
    assert pck_correct(pred, gt, norm, 0.3).tolist() == [[False, False, True], [True, True, True]]
    # at 0.1: sample 0 (1 px) none; sample 1 (4 px): the 2.5 px joint (the 4 px one sits on it)
    assert pck_correct(pred, gt, norm, 0.1).tolist() == [[False, False, False], [False, False, True]]
    assert pck_correct(pred, gt, norm, 0.1, inclusive=True).tolist() == [[False, False, False], [False, True, True]]


def test_pck_table_by_hand():
    pred, gt, mask, norm = _case()
    r = pck_table(pred, gt, mask, norm, thresholds=(0.5, 0.1))
    half, tenth = r["pck"]["0.5"], r["pck"]["0.1"]
    # per joint at 0.5: joint 0 → 1/2 (sample 1 wrong); joints 1-9 → 2/2; 10-14 → 1/2; 15 → 0/1 (one annotated)
    assert half["per_joint"]["r_ankle"] == 0.5 and half["per_joint"]["r_knee"] == 1.0
    assert half["per_joint"]["r_wrist"] == 0.5 and half["per_joint"]["l_wrist"] == 0.0
    assert r["count"]["l_wrist"] == 1 and r["count"]["pelvis"] == 2
    # Tompson 14-joint mean: pelvis (6) and thorax (7) excluded
    joints = list(PCKH_JOINTS)
    correct = {0: 1, 1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 8: 2, 9: 2, 10: 1, 11: 1, 12: 1, 13: 1, 14: 1, 15: 0}
    count = {k: 2 for k in joints} | {15: 1}
    assert half["mean_weighted"] == pytest.approx(sum(correct.values()) / sum(count.values()))
    assert half["mean_unweighted"] == pytest.approx(np.mean([correct[k] / count[k] for k in joints]))
    assert half["mean_weighted"] != pytest.approx(half["mean_unweighted"])
    assert half["per_group"]["wrist"] == pytest.approx(0.25)  # mean of 0.5 and 0.0
    # at 0.1 (1 px): sample 0 joints 0, 1 (0 and 0.5 px) are correct; sample 1 all but joint 0
    assert tenth["per_joint"]["r_ankle"] == 0.5 and tenth["per_joint"]["r_knee"] == 1.0
    assert tenth["per_joint"]["r_hip"] == 0.5
    assert "0.5" in format_table(r) and "Mean(w)" in format_table(r)
    # all 16 joints pooled (princeton-vl's figure): pelvis and thorax (both right twice) count too
    assert half["mean_all"] == pytest.approx((sum(correct.values()) + 4) / (sum(count.values()) + 4))
    assert "All(w)" in format_table(r)


def test_head_column_is_the_head_top_and_the_mean_has_14_joints():
    """As bearpaw's eval_PCKh and HRNet report MPII: Head = head top alone; the mean keeps the upper neck."""
    assert [JOINT_NAMES[k] for k in PCKH_JOINTS] == [
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "upper_neck", "head_top",
        "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist"]
    gt = np.zeros((2, 16, 2))
    pred = gt.copy()
    pred[:, 9, 0] = 8.0  # head top wrong in both samples, upper neck right
    half = pck_table(pred, gt, np.ones((2, 16)), np.array([10.0, 10.0]), thresholds=(0.5,))["pck"]["0.5"]
    assert half["per_group"]["head"] == 0.0 and half["per_joint"]["upper_neck"] == 1.0
    assert half["mean_unweighted"] == pytest.approx(13 / 14)


def test_all_joint_mean_and_unannotated():
    pred, gt, mask, norm = _case()
    r = pck_table(pred, gt, mask, norm, thresholds=(0.2,), mean_joints=ALL_JOINTS)
    assert r["mean_joints"] == list(JOINT_NAMES)
    assert r["pck"]["0.2"]["mean_all"] == r["pck"]["0.2"]["mean_weighted"] and "All(w)" not in format_table(r)
    empty = pck_table(pred, gt, np.zeros_like(mask), norm, thresholds=(0.5,))
    assert empty["pck"]["0.5"]["mean_weighted"] is None and empty["pck"]["0.5"]["per_joint"]["r_ankle"] is None


def test_pck_bad_inputs():
    pred, gt, _, norm = _case()
    with pytest.raises(ValueError, match="pred and gt"):
        pck_correct(pred[:, :3], gt, norm, 0.5)
    with pytest.raises(ValueError, match="normalize"):
        pck_correct(pred, gt, norm[:1], 0.5)
    with pytest.raises(ValueError, match="normalize"):
        pck_correct(pred, gt, np.array([10.0, 0.0]), 0.5)
    for threshold in (0.0, -0.5, float("nan"), float("inf"), "0.5", None):
        with pytest.raises(ValueError, match="threshold must be a finite number > 0"):
            pck_correct(pred, gt, norm, threshold)
    mask = np.ones(pred.shape[:2])
    for thresholds in ((float("nan"),), (0.5, 0.0), ()):  # all 0.0 for perfect predictions, before
        with pytest.raises(ValueError, match="thresholds must be one or more finite numbers > 0"):
            pck_table(gt, gt, mask, norm, thresholds=thresholds)


def test_pck_auc_is_the_area_under_the_pooled_curve():
    """One joint 0.255 normalisers away: the curve steps from 0 to 1 between thresholds 0.25 and 0.26, so the
    area over [0, 0.5] scaled to [0, 1] is 0.01 (half a step) + 0.48; a second, unannotated joint and a NaN
    prediction on a third (a miss at every threshold) count as the mean joints say."""
    from hgfast.eval.pck import pck_auc

    gt = np.zeros((1, 3, 2))
    pred = np.array([[[2.55, 0.0], [0.0, 0.0], [np.nan, np.nan]]])
    mask = np.array([[1, 0, 1]])
    assert pck_auc(pred, gt, mask, np.array([10.0]), [0]) == pytest.approx(0.49)
    assert pck_auc(pred, gt, mask, np.array([10.0]), [0, 1]) == pytest.approx(0.49)  # joint 1 not annotated
    assert pck_auc(pred, gt, mask, np.array([10.0]), [0, 2]) == pytest.approx(0.49 / 2)
    assert pck_auc(pred, gt, mask, np.array([10.0]), [1]) is None
    assert pck_auc(gt, gt, mask, np.array([10.0]), [0], inclusive=True) == pytest.approx(1.0)  # exact at 0
