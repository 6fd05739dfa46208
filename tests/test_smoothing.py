"""hgfast.smoothing: the One-Euro filter against a plain per-joint reference, its low-pass behaviour, bad input."""
import math

import numpy as np
import pytest

from hgfast.smoothing import OneEuroFilter, PeopleSmoother


def reference(track: np.ndarray, times: np.ndarray, heights: np.ndarray, min_cutoff: float, beta: float,
              d_cutoff: float) -> np.ndarray:
    """Casiez et al.'s filter written out joint by joint: ``track`` (T, K, 2), the cutoff from the joint's 2D speed
    in box heights per second."""
    def alpha(dt, cutoff):
        tau = 1 / (2 * math.pi * cutoff)
        return 1 / (1 + tau / dt)

    out = np.empty_like(track)
    for k in range(track.shape[1]):
        x, dx = track[0, k].copy(), np.zeros(2)
        out[0, k] = x
        for t in range(1, len(track)):
            dt = times[t] - times[t - 1]
            a_d = alpha(dt, d_cutoff)
            dx = a_d * (track[t, k] - x) / dt + (1 - a_d) * dx
            cutoff = min_cutoff + beta * math.hypot(*dx) / heights[t]
            a = alpha(dt, cutoff)
            x = a * track[t, k] + (1 - a) * x
            out[t, k] = x
    return out


@pytest.mark.parametrize("min_cutoff,beta,d_cutoff", [(1.0, 0.0, 1.0), (4.0, 0.3, 1.0), (0.5, 5.0, 2.5)])
def test_matches_the_reference(min_cutoff, beta, d_cutoff):
    rng = np.random.default_rng(0)
    track = np.cumsum(rng.normal(0, 3, (40, 5, 2)), axis=0) + 100  # random walks
    times = np.cumsum(rng.choice([0.04, 0.08, 0.2], 40))  # frames at 25 fps with gaps
    heights = rng.uniform(50, 150, 40)
    f = OneEuroFilter(min_cutoff, beta, d_cutoff)
    got = np.stack([f(x, t, h) for x, t, h in zip(track, times, heights)])
    np.testing.assert_allclose(got, reference(track, times, heights, min_cutoff, beta, d_cutoff), rtol=1e-12)


def test_low_pass_behaviour():
    """First frame as given, a still joint stays, a ramp is followed with the first-order filter's steady lag,
    noise is reduced, and beta shortens the lag of a moving joint."""
    dt, fc = 0.04, 2.0
    f = OneEuroFilter(fc, 0.0)
    first = np.array([[3.0, 4.0]])
    np.testing.assert_array_equal(f(first, 0.0, 1.0), first)
    assert np.array_equal(f(first, dt, 1.0), first)
    ramp = OneEuroFilter(fc, 0.0)
    for i in range(200):
        out = ramp(np.array([[10.0 * i, 0.0]]), i * dt, 1.0)
    a = 2 * math.pi * fc * dt / (2 * math.pi * fc * dt + 1)
    assert 10.0 * 199 - out[0, 0] == pytest.approx(10.0 * (1 - a) / a, rel=1e-9)  # v dt (1 - a) / a
    rng = np.random.default_rng(1)
    noisy = rng.normal(0, 1, (500, 1, 2))
    smooth = OneEuroFilter(1.0, 0.0)
    out = np.stack([smooth(x, i * dt, 1.0) for i, x in enumerate(noisy)])
    assert out[100:].std() < 0.4 * noisy[100:].std()
    lags = []
    for beta in (0.0, 1.0):
        f = OneEuroFilter(1.0, beta)
        for i in range(50):
            out = f(np.array([[20.0 * i, 0.0]]), i * dt, 100.0)  # 5 box heights per second
        lags.append(20.0 * 49 - out[0, 0])
    assert lags[1] < 0.5 * lags[0]


def test_scale_free_and_direction_free():
    """Scaling the keypoints and the box by c scales the output by c; rotating the track rotates the output."""
    rng = np.random.default_rng(2)
    track = np.cumsum(rng.normal(0, 2, (30, 4, 2)), axis=0)
    turn = np.array([[0.6, -0.8], [0.8, 0.6]])
    outs = []
    for points, height in ((track, 80.0), (3 * track, 240.0), (track @ turn.T, 80.0)):
        f = OneEuroFilter(2.0, 1.5)
        outs.append(np.stack([f(x, i / 30, height) for i, x in enumerate(points)]))
    np.testing.assert_allclose(outs[1], 3 * outs[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(outs[2], outs[0] @ turn.T, atol=1e-10)


def test_people_smoother_keeps_one_filter_per_id_across_gaps():
    rng = np.random.default_rng(3)
    a, b = rng.normal(50, 5, (6, 3, 2)), rng.normal(90, 5, (6, 3, 2))
    smoother = PeopleSmoother(10.0, min_cutoff=1.0, beta=0.5)
    ref_a, ref_b = OneEuroFilter(1.0, 0.5), OneEuroFilter(1.0, 0.5)
    box = (0, 0, 40, 60)
    for i in range(6):
        np.testing.assert_array_equal(smoother(i, "a", a[i], box), ref_a(a[i], i / 10, 60))
        if i % 2 == 0:  # b is seen every other frame: its filter steps 0.2 s
            np.testing.assert_array_equal(smoother(i, 7, b[i], box), ref_b(b[i], i / 10, 60))
    assert sorted(map(str, smoother.filters)) == ["7", "a"]


def test_joints_that_are_not_finite_pass_through_and_leave_their_filter_alone():
    """A joint NaN in some frames comes back as given there; elsewhere it is filtered exactly as if those frames
    had not been (each joint's time step runs from its last finite frame); one NaN from the start starts where it
    is first finite. The other joints are not affected."""
    rng = np.random.default_rng(4)
    track = np.cumsum(rng.normal(0, 2, (12, 3, 2)), axis=0)
    track[[3, 4, 7], 1] = np.nan
    track[:5, 2, 0] = np.nan
    f = OneEuroFilter(2.0, 1.0)
    got = np.stack([f(x, i / 25, 50.0) for i, x in enumerate(track)])
    for joint in range(3):
        finite = np.isfinite(track[:, joint]).all(1)
        alone = OneEuroFilter(2.0, 1.0)
        want = np.stack([alone(track[i, joint][None], i / 25, 50.0)[0] for i in np.flatnonzero(finite)])
        np.testing.assert_allclose(got[finite, joint], want, rtol=1e-12)
        np.testing.assert_array_equal(got[~finite, joint], track[~finite, joint])


def test_bad_input_names_the_argument():
    for kwargs, message in (({"min_cutoff": 0}, "min_cutoff must be a finite number > 0"),
                            ({"min_cutoff": math.inf}, "min_cutoff"),
                            ({"beta": -1}, "beta must be a finite number >= 0"),
                            ({"beta": math.nan}, "beta"), ({"beta": True}, "beta"),
                            ({"d_cutoff": "1"}, "d_cutoff must be")):
        with pytest.raises(ValueError, match=message):
            OneEuroFilter(**kwargs)
        with pytest.raises(ValueError, match=message):
            PeopleSmoother(25.0, **kwargs)
    with pytest.raises(ValueError, match="fps must be"):
        PeopleSmoother(0.0)
    f = OneEuroFilter()
    with pytest.raises(ValueError, match=r"keypoints must be \(K, 2\)"):
        f(np.zeros((3, 3)), 0.0, 1.0)
    with pytest.raises(ValueError, match="box_height must be"):
        f(np.zeros((3, 2)), 0.0, 0.0)
    with pytest.raises(ValueError, match="time must be finite"):
        f(np.zeros((3, 2)), math.nan, 1.0)
    f(np.zeros((3, 2)), 1.0, 1.0)
    with pytest.raises(ValueError, match="time must increase"):
        f(np.zeros((3, 2)), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"keypoints of shape \(4, 2\) after \(3, 2\)"):
        f(np.zeros((4, 2)), 2.0, 1.0)
    smoother = PeopleSmoother(25.0)
    smoother(3, 0, np.zeros((3, 2)), (0, 0, 1, 1))
    with pytest.raises(ValueError, match="time must increase"):  # one person twice in a frame
        smoother(3, 0, np.zeros((3, 2)), (0, 0, 1, 1))


def test_extreme_settings_give_finite_joints():
    """A cutoff so high that 2π·f·dt overflows passes the joints through (alpha 1), never NaN."""
    rng = np.random.default_rng(3)
    for min_cutoff, beta in ((1e308, 0.0), (1.0, 1e308), (1e308, 1e308)):
        f = OneEuroFilter(min_cutoff, beta)
        for t in range(5):
            joints = rng.uniform(0, 100, (4, 2))
            np.testing.assert_allclose(f(joints, t / 30, 50.0), joints) if t else f(joints, 0.0, 50.0)
