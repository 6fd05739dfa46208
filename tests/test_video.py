"""hgfast.video: reading and writing frames, the tracking box, and predict_video with and without tracking."""
import numpy as np
import pytest

from hgfast.data import box_to_center_scale
from hgfast.video import VideoFrames, next_box, predict_video, video_writer


def _frames(n=6, size=(80, 60)):
    """Frames with a bright 10 x 10 square moving right by a pixel a frame: the 'person'."""
    out = []
    for i in range(n):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[20:30, 5 + i:15 + i] = 200
        out.append(frame)
    return out


def test_video_round_trip(tmp_path):
    frames = _frames()
    path = tmp_path / "clip.mp4"
    with video_writer(path, 12.0, (80, 60)) as write:
        for frame in frames:
            write(frame)
    video = VideoFrames(path)
    assert video.size == (80, 60) and video.fps == pytest.approx(12.0) and video.count == 6
    read = list(video)
    assert len(read) == 6 and read[0].shape == (60, 80, 3) and read[0].dtype == np.uint8
    assert np.abs(read[3].astype(int) - frames[3]).mean() < 8  # lossy codec, same picture
    assert len(list(video)) == 6  # iterating again reads the file again
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no partial file left


def test_video_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoFrames(tmp_path / "nope.mp4")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="text.mp4"):
        VideoFrames(tmp_path / "text.mp4")
    with pytest.raises(ValueError, match=".gif"):
        with video_writer(tmp_path / "x.gif", 10, (8, 8)):
            pass
    with pytest.raises(ValueError, match="frame of 8x6 for a 80x60 video"):
        with video_writer(tmp_path / "out.avi", 10, (80, 60)) as write:
            write(np.zeros((60, 80, 3), np.uint8))
            write(np.zeros((6, 8, 3), np.uint8))
    assert not list(tmp_path.glob("*out*"))  # an interrupted video leaves nothing behind


def test_next_box_keeps_the_confident_joints_inside_the_frame():
    kp = np.array([[10.0, 20.0], [30.0, 50.0], [70.0, 5.0], [-10.0, 40.0]])
    scores = np.array([0.9, 0.5, 0.1, 0.3])
    assert next_box(kp, scores, 0.4, (80, 60)) == (9.5, 19.5, 21.0, 31.0)  # joints 0 and 1, edge coordinates
    assert next_box(kp, scores, 0.25, (80, 60)) == (0.0, 19.5, 30.5, 31.0)  # joint 3 is left of the frame
    assert next_box(kp, scores, 0.6, (80, 60)) is None  # one joint: no box
    assert next_box(kp[:2] + 100, scores[:2], 0.4, (80, 60)) is None  # outside the frame


class _SquareFinder:
    """A stand-in predictor: two 'joints' at the square's corners, found (score 1) only where the square lies in
    the crop a ``Predictor`` cuts for the box (``box_to_center_scale``, margin 1.25, square); it counts the frames
    of each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, images, boxes):
        self.calls.append(len(images))
        kps, scores = [], []
        for image, box in zip(images, boxes):
            (cx, cy), scale = box_to_center_scale(box)
            half = 100 * scale
            ys, xs = np.nonzero(image[..., 0] > 100)
            inside = xs.min() >= cx - half and xs.max() < cx + half and ys.min() >= cy - half and ys.max() < cy + half
            kps.append([[xs.min(), ys.min()], [xs.max(), ys.max()]])
            scores.append([float(inside)] * 2)
        return np.array(kps, np.float32), np.array(scores, np.float32)


def test_predict_video_follows_the_person():
    finder, first = _SquareFinder(), (4.5, 19.5, 10.0, 10.0)  # the square's box in frame 0
    out = list(predict_video(finder, _frames(), box=first))
    assert len(out) == 6 and finder.calls == [1] * 6
    assert all(scores.min() == 1 for _, _, scores, _ in out)  # the square never left its crop
    boxes = [box for *_, box in out]
    assert boxes[:2] == [first, first]  # frame 1: the box of frame 0's joints
    assert [box[0] for box in boxes[2:]] == [5.5, 6.5, 7.5, 8.5]  # one pixel a frame, as the square
    np.testing.assert_allclose(out[3][1], [[8, 20], [17, 29]])
    fixed = list(predict_video(finder, _frames(), box=first, track=False, batch_size=4))
    assert finder.calls[6:] == [4, 2] and all(box == first for *_, box in fixed)
    assert [scores.min() for _, _, scores, _ in fixed] == [1, 1, 0, 0, 0, 0]  # the square leaves the fixed crop
    whole = list(predict_video(finder, _frames(2), track=False))
    assert [box for *_, box in whole] == [(0.0, 0.0, 80.0, 60.0)] * 2
    lost = list(predict_video(finder, _frames(3), box=(60, 0, 10, 10)))  # nothing found: the box stays
    assert [box for *_, box in lost] == [(60.0, 0.0, 10.0, 10.0)] * 3
    with pytest.raises(ValueError, match="threshold"):
        list(predict_video(finder, _frames(1), threshold=float("nan")))
