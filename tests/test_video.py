"""hgfast.video: reading and writing frames, the tracking box, and predict_video with and without tracking."""
import numpy as np
import pytest

from hgfast.data import box_to_center_scale
from hgfast.video import (BoxIds, VideoFrames, box_iou, confident_box, next_box, predict_video, predict_video_boxes,
                          read_frame_boxes, video_writer)


def _frames(n=6, size=(80, 60)):
    """Frames with a bright 10 x 10 square (columns 30 + i to 39 + i in frame i, rows 20 to 29): the 'person'."""
    out = []
    for i in range(n):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[20:30, 30 + i:40 + i] = 200
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


def test_video_colours_are_rgb(tmp_path):
    """Frames in and out are RGB, the files BGR as OpenCV writes them: a red frame stays red both ways."""
    import cv2

    raw = cv2.VideoWriter(str(tmp_path / "bgr.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (16, 16))
    raw.write(np.full((16, 16, 3), (0, 0, 255), np.uint8))  # red in OpenCV's BGR
    raw.release()
    (frame,) = list(VideoFrames(tmp_path / "bgr.avi"))
    assert frame[..., 0].mean() > 200 and frame[..., 2].mean() < 50
    with video_writer(tmp_path / "rgb.avi", 5, (16, 16)) as write:
        write(np.full((16, 16, 3), (255, 0, 0), np.uint8))  # red in RGB
    ok, back = cv2.VideoCapture(str(tmp_path / "rgb.avi")).read()
    assert ok and back[..., 2].mean() > 200 and back[..., 0].mean() < 50


def test_odd_sized_frames_are_padded_to_even_sides(tmp_path):
    with video_writer(tmp_path / "odd.mp4", 5, (33, 31)) as write:
        write(np.full((31, 33, 3), 128, np.uint8))
    video = VideoFrames(tmp_path / "odd.mp4")
    (frame,) = list(video)
    assert video.size == (34, 32) and abs(int(frame[15, 16, 1]) - 128) < 10


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


def test_next_box_centres_the_size_on_the_confident_joints():
    kp = np.array([[10.0, 20.0], [30.0, 50.0], [70.0, 5.0], [-10.0, 40.0], [20.0, 30.0], [25.0, 35.0]])
    scores = np.array([0.9, 0.5, 0.1, 0.3, 0.8, 0.8])
    # joints 0, 1, 4, 5: the box (10, 20, 21, 31) in edge coordinates (pixel x spans x to x + 1), centre (20.5, 35.5)
    np.testing.assert_allclose(confident_box(kp, scores, 0.4), (10.0, 20.0, 21.0, 31.0))
    assert next_box(kp, scores, 0.4, (80, 60), (30, 40)) == (5.5, 15.5, 30.0, 40.0)
    assert next_box(kp, scores, 0.4, (80, 60), (60, 80)) == (-9.5, -4.5, 60.0, 80.0)  # may reach past the edge
    assert next_box(kp, scores, 0.85, (80, 60), (30, 40)) is None  # one joint: no box
    nine = np.concatenate([kp, kp[:3]]), np.array([0.9, 0.5, 0.1, 0.3, 0.8, 0.7, 0.0, 0.0, 0.0])
    assert next_box(*nine, 0.75, (80, 60), (30, 40)) is None  # two joints (0, 4) of nine: fewer than a third
    assert next_box(*nine, 0.6, (80, 60), (30, 40)) is not None  # three of nine
    assert next_box(kp + 100, scores, 0.4, (80, 60), (30, 40)) is None  # centre outside the frame


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
    finder, first = _SquareFinder(), (20.0, 10.0, 30.0, 30.0)
    out = list(predict_video(finder, _frames(), box=first))
    assert len(out) == 6 and finder.calls == [1] * 6
    assert all(scores.min() == 1 for _, _, scores, _ in out)  # the square never left its crop
    boxes = [box for *_, box in out]
    assert boxes[0] == first  # then the first size, centred on the square of the frame before: (35 + i, 25)
    assert boxes[1:] == [(20.0 + i, 10.0, 30.0, 30.0) for i in range(5)]
    np.testing.assert_allclose(out[3][1], [[33, 20], [42, 29]])
    unboxed = [box for *_, box in predict_video(finder, _frames(3))]  # the whole frame, then 1.2 x the joints' box
    assert unboxed == [(0.0, 0.0, 80.0, 60.0), (29.0, 19.0, 12.0, 12.0), (30.0, 19.0, 12.0, 12.0)]
    fixed = list(predict_video(finder, _frames(), box=(29.5, 19.5, 10.0, 10.0), track=False, batch_size=4))
    assert finder.calls[9:] == [4, 2] and all(box == (29.5, 19.5, 10.0, 10.0) for *_, box in fixed)
    assert [scores.min() for _, _, scores, _ in fixed] == [1, 1, 0, 0, 0, 0]  # the square leaves the fixed crop
    whole = list(predict_video(finder, _frames(2), track=False))
    assert [box for *_, box in whole] == [(0.0, 0.0, 80.0, 60.0)] * 2
    lost = list(predict_video(finder, _frames(3), box=(0, 40, 10, 10)))  # nothing found: the box stays
    assert [box for *_, box in lost] == [(0.0, 40.0, 10.0, 10.0)] * 3
    for bad in (float("nan"), -0.1, 1.5):
        with pytest.raises(ValueError, match="threshold must be a number in \\[0, 1\\]"):
            list(predict_video(finder, _frames(1), threshold=bad))
    with pytest.raises(ValueError, match="batch_size"):
        list(predict_video(finder, _frames(1), track=False, batch_size=0))
    assert len(list(predict_video(finder, _frames(1), threshold=np.float32(0.3)))) == 1


def test_tracking_keeps_the_first_size_and_waits_for_joints_without_a_box():
    """A growing square: the box follows its centre at the first size (a frame's joints do not set it). Without
    a first box, frames are cropped whole until the joints are found; their box sets the size."""
    grown = []
    for i in range(4):
        frame = np.zeros((60, 80, 3), np.uint8)
        frame[20:30 + 2 * i, 30:40 + 2 * i] = 200  # 10 + 2i pixels a side
        grown.append(frame)
    boxes = [box for *_, box in predict_video(_SquareFinder(), grown, box=(20.0, 10.0, 30.0, 30.0))]
    assert [box[2:] for box in boxes] == [(30.0, 30.0)] * 4
    assert [box[0] + box[2] / 2 for box in boxes[1:]] == [35.0, 36.0, 37.0]  # the square's centre a frame before

    finder, calls = _SquareFinder(), []

    def blind_at_first(images, boxes):  # finds nothing in the first two frames
        kp, scores = finder(images, boxes)
        calls.append(boxes[0])
        return kp, scores * (len(calls) > 2)

    boxes = [box for *_, box in predict_video(blind_at_first, _frames(4))]
    assert boxes[:3] == [(0.0, 0.0, 80.0, 60.0)] * 3 and boxes[3] == (31.0, 19.0, 12.0, 12.0)


def test_frame_boxes_are_read_and_every_person_predicted(tmp_path):
    import json

    path = tmp_path / "dets.json"
    path.write_text(json.dumps({"0": [[30, 20, 10, 10, 0.9], [0, 0, 10, 10, 0.1]], "2": [{"bbox": [31, 20, 10, 10]}]}))
    boxes = read_frame_boxes(path, min_score=0.5)
    assert boxes == {0: [((30.0, 20.0, 10.0, 10.0), 0.9)], 2: [((31.0, 20.0, 10.0, 10.0), None)]}
    assert len(read_frame_boxes(path)[0]) == 2
    out = list(predict_video_boxes(_SquareFinder(), _frames(3), read_frame_boxes(path)))
    assert [len(people) for _, people in out] == [2, 0, 1]
    (kp, scores, box, score), (_, missed, _, low) = out[0][1]
    assert box == (30.0, 20.0, 10.0, 10.0) and score == 0.9 and scores.min() == 1 and low == 0.1
    assert missed.max() == 0  # the square is not in the second box's crop
    np.testing.assert_allclose(out[2][1][0][0], [[32, 20], [41, 29]])
    for bad, match in (([1, 2], "must map frame indices"), ({"first": []}, "keys must be frame indices"),
                       ({"01": []}, "'01': keys must be frame indices"), ({"²": []}, "keys must be frame indices"),
                       ({"١": []}, "keys must be frame indices"), ({"-1": []}, "keys must be frame indices"),
                       ({"9" * 5000: []}, "keys must be frame indices"), ({"0": [[1, 2, 0, 4]]}, "frame 0")):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            read_frame_boxes(path)


def test_box_ids_follow_the_best_overlapping_box():
    ids = BoxIds(min_iou=0.3)
    assert ids([(0, 0, 10, 10), (50, 0, 10, 10)]) == [0, 1]
    assert ids([(52, 1, 10, 10), (1, 0, 10, 10), (100, 100, 5, 5)]) == [1, 0, 2]  # moved a little; a newcomer
    assert ids([]) == []
    assert ids([(1, 1, 10, 10), (30, 0, 10, 10)]) == [0, 3]  # after an empty frame: the frame before it; a newcomer
    assert ids([(30, 3, 10, 10), (31, 0, 10, 10)]) == [4, 3]  # one id per person: the better overlap keeps it
    twins = BoxIds()
    assert twins([(0, 0, 10, 10)]) == [0] and twins([(0, 0, 10, 10)] * 2) == [0, 1]  # a tie: to the earlier box
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0 and box_iou((0, 0, 1e200, 1e200), (0, 0, 1e200, 1e200)) == 0
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="min_iou"):
            BoxIds(bad)
