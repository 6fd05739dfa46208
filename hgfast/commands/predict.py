"""``hgfast predict``: keypoints for images, JSON and pictures."""
from __future__ import annotations

from pathlib import Path

from .common import (IMAGE_SUFFIXES, add_predictor_args, boxes_min_score, build_predictor, check_outputs, fail,
                     parse_box, people_text, write_json)

def _cmd_predict(args) -> int:
    import cv2

    from ..data.crop import box_overlaps
    from ..data.mpii import read_image
    from ..visualize import draw_skeleton, save_image

    try:
        args.images = _image_paths(args.images, Path(args.out))
        people = _people_boxes(args)
        for path in args.images:  # every file, before any work: its existence and a decoder for its header
            if not Path(path).is_file():
                raise FileNotFoundError(f"image not found: {path}")
            if not cv2.haveImageReader(str(path)):
                raise ValueError(f"not an image file OpenCV reads: {path}")
        out, taken = Path(args.out), set()
        pictures = [out / _picture_name(Path(path).stem, taken) for path in args.images]
        check_outputs([*args.images, *([args.boxes] if args.boxes else [])],
                       [*zip(args.images, [[p] for p in pictures]), ("all images", [out / "predictions.json"])])
        predictor = build_predictor(args)
    except (ValueError, FileNotFoundError) as exc:
        return fail("predict", exc)
    results, written, joints = [], 0, predictor.skeleton.names
    try:
        for start in range(0, len(args.images), args.batch_size):  # a batch of images in memory at a time
            paths, found_in = args.images[start:start + args.batch_size], people[start:start + args.batch_size]
            images = [read_image(p) for p in paths]
            flat = [(i, box) for i, found in enumerate(found_in) for box, _ in found]
            for i, box in flat:
                size = images[i].shape[1::-1]
                if box is not None and not box_overlaps(box, size):
                    raise ValueError(f"{'--boxes' if args.boxes else '--box'}: the box {list(box)} lies outside "
                                     f"the {size[0]}x{size[1]} image {paths[i]}")
            keypoints, scores = predictor([images[i] for i, _ in flat], [box for _, box in flat])
            out.mkdir(parents=True, exist_ok=True)
            person = 0
            for path, image, found, picture in zip(paths, images, found_in, pictures[start:start + len(paths)]):
                for box, box_score in found:  # every person of the image on one picture
                    kp, sc = keypoints[person], scores[person]
                    person += 1
                    image = draw_skeleton(image, kp, limbs=predictor.skeleton.limbs)
                    results.append({"image": str(path), "box": box, "picture": str(picture),
                                    **({} if box_score is None else {"box_score": box_score}),
                                    "keypoints": {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in
                                                  zip(joints, kp)},
                                    "scores": {n: round(float(s), 4) for n, s in zip(joints, sc)}})
                save_image(image, picture)
                written += 1
    except (ValueError, OSError) as exc:  # a later image that fails to decode, a picture that cannot be written
        done = f"{written} of {len(args.images)} pictures written, predictions.json not" if written else \
            "nothing written"
        return fail("predict", f"{exc} ({done})")
    write_json(results, out / "predictions.json")
    print(f"wrote {out / 'predictions.json'} ({people_text(len(results))}) and {written} picture(s) in {out}")
    return 0


def _image_paths(given: list[str], out_folder: Path) -> list[str]:
    """``given`` with each folder replaced by its image files (``IMAGE_SUFFIXES``, any case; not its subfolders),
    sorted by name; ValueError for a folder without any, and for ``out_folder`` (``--out``) given as one: the
    pictures written there would be a later run's images (a folder inside it is not listed)."""
    out = []
    for path in given:
        if not Path(path).is_dir():
            out.append(path)
            continue
        if Path(path).resolve() == out_folder.resolve():
            raise ValueError(f"--out {out_folder} is the input folder {path}: a later run would take the pictures "
                             f"written there as images (give --out another folder, e.g. a subfolder)")
        found = sorted(str(f) for f in Path(path).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not found:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder {path}")
        out.extend(found)
    return out


def _picture_name(stem: str, taken: set) -> str:
    """``<stem>_pose.jpg``, or ``<stem>_pose_2.jpg``, ... where ``taken`` has it (a/x.jpg and b/x.jpg); added to
    ``taken``."""
    name, n = f"{stem}_pose.jpg", 1
    while name in taken:
        n += 1
        name = f"{stem}_pose_{n}.jpg"
    taken.add(name)
    return name




def _people_boxes(args) -> list[list[tuple]]:
    """Per image of ``args.images``, its people as ``(box or None (the whole image), detector score or None)``:
    from ``--boxes`` (a JSON file), else ``--box`` (once for all images or once per image), else the whole image."""
    from ..predict import read_boxes_file

    min_score = boxes_min_score(args)
    if args.boxes is not None:
        if args.box:
            raise ValueError("give --box or --boxes, not both")
        return read_boxes_file(args.boxes, args.images, min_score)
    boxes = args.box or [None]
    if len(boxes) not in (1, len(args.images)):
        raise ValueError(f"give one --box for all images or one per image ({len(args.images)}), got {len(boxes)}")
    return [[(box, None)] for box in (boxes * len(args.images) if len(boxes) == 1 else boxes)]


def add_parsers(sub) -> None:
    p = sub.add_parser("predict", help="keypoints for images: JSON and pictures with the skeleton drawn")
    p.add_argument("images", nargs="+", help="image files, or folders of them (their .jpg, .png, ... files, "
                   "sorted by name, not their subfolders)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--box", type=parse_box, action="append", metavar="X,Y,W,H",
                   help="person box in pixels (the whole image is 0,0,W,H): once for all images or once per image "
                   "(default: the whole image)")
    p.add_argument("--boxes", metavar="JSON", help="several people per image: a JSON object mapping each image "
                   "(path as given, or file name) to its boxes, [x, y, w, h], [x, y, w, h, score] or {\"bbox\": "
                   "[x, y, w, h], \"score\": s} (a detector's output); all of an image's people go on its picture "
                   "(an image with no box: no entry in predictions.json, the picture as it is)")
    p.add_argument("--min-score", type=float, help="with --boxes: leave out boxes scored below this")
    add_predictor_args(p)
    p.set_defaults(func=_cmd_predict)
