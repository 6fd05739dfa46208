"""Commands on files alone, no model: ``hgfast score`` (predictions against annotations), ``hgfast convert-mpii``
and ``hgfast mpii-submission``."""
from __future__ import annotations

from pathlib import Path

from .common import add_inclusive_arg, check_outputs, fail, parse_thresholds, people_text, write_json

def _cmd_score(args) -> int:
    from ..eval import format_table, score_mpii_predictions
    from ..eval.coco_score import score_coco_results

    out = Path(args.json) if args.json else None
    coco = Path(args.predictions).suffix.lower() == ".json"
    try:
        check_outputs([args.predictions, args.annotations], [("--json", [out])] if out else [], flag=None)
        given = [flag for flag, value in (("--thresholds", args.thresholds), ("--inclusive", args.inclusive or None),
                                          ("--oks-sigmas", args.oks_sigmas), ("--category-id", args.category_id))
                 if value is not None]
        wrong = [f for f in given if (f in ("--oks-sigmas", "--category-id")) != coco]
        if wrong:
            raise ValueError(f"{wrong[0]} applies to {'MPII predictions (.h5)' if coco else 'COCO results (.json)'}"
                             f", not to {args.predictions}")
        if coco:
            sigmas = parse_thresholds(args.oks_sigmas, "--oks-sigmas") if args.oks_sigmas else None
            table = score_coco_results(args.predictions, args.annotations, args.category_id, sigmas)
        else:
            thresholds = parse_thresholds(args.thresholds) if args.thresholds else (0.5, 0.1)
            table = score_mpii_predictions(args.predictions, args.annotations, thresholds, args.inclusive)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        return fail("score", exc)
    table.update(predictions=str(args.predictions), annotations=str(args.annotations))
    print(f"{args.predictions} against {args.annotations}, " + (
        f"{people_text(table['results'])} (OKS AP over every image; results of other categories left out: "
        f"{table['other_categories']})" if coco else
        f"{table['samples']} samples ({'<=' if args.inclusive else '<'} threshold x normalize)"))
    print(format_table(table))
    if out:
        try:
            write_json(table, out)
        except OSError as exc:
            return fail("score", exc)
        print(f"wrote {out}")
    return 0


def _cmd_convert_mpii(args) -> int:
    from ..data.mpii_release import convert_release
    from ..data.peer_mpii import convert_peer_annotations

    release = Path(args.annotations).suffix.lower() == ".mat"
    try:
        flags = {"--head-boxes": args.head_boxes, "--valid-from": args.valid_from,
                 "--single-person": args.single_person or None}
        wrong = [f for f, value in flags.items() if value is not None and (f != "--head-boxes") != release]
        if wrong:
            raise ValueError(f"{wrong[0]} applies to " + ("a peer's JSON file" if wrong[0] == "--head-boxes" else
                                                           "MPII's release (.mat)") + f", not to {args.annotations}")
        written = convert_release(args.annotations, args.out, args.valid_from, args.single_person,
                                  args.overwrite) if release else \
            convert_peer_annotations(args.annotations, args.out, args.head_boxes, args.overwrite)
    except (ValueError, OSError, ImportError) as exc:
        return fail("convert-mpii", exc)
    source = args.annotations if release else args.head_boxes
    for w in written:
        notes = [f"{w['scorable']} scorable" + (f" (PCKh normaliser from {source})" if w["scorable"] else
                                                 " (no head boxes: trainable, not scorable)")] if w["joints"] else \
            ["no labels (a test split: predictions only)"]
        notes += [f"{w['left_out']} without a position{' or joints' if release else ''} left out"] \
            if w["left_out"] else []
        notes += [f"{w['dropped']} joints the head-box file marks missing left unannotated"] if w.get("dropped") else []
        notes += [f"{w['added']} joints only the head-box file has taken from it"] if w.get("added") else []
        print(f"wrote {w['path']}: {people_text(w['people'])}, {w['joints']} annotated joints; {'; '.join(notes)}")
    return 0


def _cmd_mpii_submission(args) -> int:
    from ..eval.mpii_submission import MIN_CORRELATION, write_mpii_submission

    out = Path(args.out)
    try:
        if out.suffix.lower() != ".mat":
            raise ValueError(f"--out {out} must be a .mat file (MPII's server reads MATLAB files)")
        check_outputs([args.predictions, args.annotations, args.release], [("--out", [out])])
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"--out {out} exists; give --overwrite to replace it")
        written = write_mpii_submission(args.predictions, args.annotations, args.release, out)
    except (ValueError, OSError, ImportError) as exc:
        return fail("mpii-submission", exc)
    print(f"wrote {out}: {people_text(written['people'])} in {written['images']} test images")
    low = [f"{axis} {c:.2f}" for axis, c in zip("xy", written["correlation"]) if not c >= MIN_CORRELATION]
    if low:
        print(f"warning: the thorax predictions correlate little with the people's positions ({', '.join(low)}): "
              f"are the predictions in {args.annotations}' row order, and for that split?")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("score", help="PCK / PCKh of an MPII-style predictions file, or OKS AP of a COCO results "
                       "file (hgfast eval --results, or another model's) against an annotation file: no model, no "
                       "images")
    p.add_argument("predictions", help="an h5 file with 'preds' (N, K, 2) in the annotation file's coordinates and "
                   "row order (and 'imgname', checked row by row, where it has one; a MATLAB .mat with 'preds' too, "
                   "as HRNet's pred.mat and bearpaw's preds_valid.mat), or a .json COCO keypoint results file "
                   "(image_id, category_id, keypoints, score)")
    p.add_argument("--annotations", required=True, help="the MPII-style h5 annotation file (e.g. annot/valid.h5) "
                   "or COCO keypoint file (e.g. person_keypoints_val2017.json)")
    p.add_argument("--thresholds", help="MPII: PCK thresholds, comma-separated (default 0.5,0.1)")
    add_inclusive_arg(p)
    p.add_argument("--oks-sigmas", help="COCO: the joints' OKS sigmas, comma-separated (default COCO's, for its 17 "
                   "joints)")
    p.add_argument("--category-id", type=int, help="COCO: the keypoint category scored, where the file has "
                   "several (an integer id; results of the others are left out)")
    p.add_argument("--json", help="write the table here")
    p.set_defaults(func=_cmd_score)
    p = sub.add_parser("convert-mpii", help="MPII's release (.mat) or the annotations in bearpaw's, HRNet's or "
                       "mmpose's JSON format to the h5 files hgfast trains and scores on (train.h5, valid.h5, ...)")
    p.add_argument("annotations", help="MPII's mpii_human_pose_v1_u12_1.mat (train.h5, test.h5; needs scipy: pip "
                   "install 'hgfast[mat]'), bearpaw's mpii_annotations.json (.json.gz too: both splits), or HRNet's / "
                   "mmpose's train.json, valid.json, test.json (mpii_val.json, ...: one split each)")
    p.add_argument("--head-boxes", help="the evaluation .mat with the validation split's head boxes (HRNet's "
                   "gt_valid.mat, mmpose's mpii_gt_val.mat, bearpaw's detections_our_format.mat): the PCKh "
                   "normaliser of the validation split (a file before MATLAB v7.3 needs scipy: pip install "
                   "'hgfast[mat]')")
    p.add_argument("--valid-from", help="MPII's release: a file of the validation people (Tompson et al.'s split: "
                   "pose-hg-train's annot/valid.h5 or bearpaw's mpii_annotations.json, matched by MPII's numbers; "
                   "HRNet's / mmpose's valid.json, by image and centre): they go to valid.h5, in its order, the rest "
                   "stay in train.h5")
    p.add_argument("--single-person", action="store_true", help="MPII's release: only the people of MPII's "
                   "single-person benchmark (RELEASE.single_person)")
    p.add_argument("--out", required=True, help="folder for the h5 files (e.g. /data/mpii/annot)")
    p.add_argument("--overwrite", action="store_true", help="replace h5 files already there")
    p.set_defaults(func=_cmd_convert_mpii)
    p = sub.add_parser("mpii-submission", help="MPII's test-set submission file (pred_keypoints_mpii.mat) from "
                       "predictions of the test split (hgfast eval --results test_preds.h5): no model, no images")
    p.add_argument("predictions", help="predictions of every row of --annotations ('preds' (N, 16, 2) in its "
                   "coordinates and row order, checked as hgfast score checks them)")
    p.add_argument("--annotations", required=True, help="the test split's h5 file, with MPII's 'index' / 'person' "
                   "numbers (pose-hg-train's annot/test.h5, or convert-mpii's)")
    p.add_argument("--release", required=True, help="MPII's mpii_human_pose_v1_u12_1.mat (needs scipy: pip install "
                   "'hgfast[mat]')")
    p.add_argument("--out", required=True, help="the submission file to write (e.g. pred_keypoints_mpii.mat)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_mpii_submission)
