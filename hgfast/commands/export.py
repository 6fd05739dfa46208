"""``hgfast export``: the unfused model as ONNX."""
from __future__ import annotations

from pathlib import Path

from .common import as_flag, check_writable, fail, parse_input_size

def _input_size(args, checkpoint: Path):
    """``--input-size``, else the training data's (``checkpoint_settings``), else 256."""
    from ..predict import checkpoint_settings

    return args.input_size or checkpoint_settings(checkpoint).get("input_size", 256)


def _cmd_export(args) -> int:
    from ..export import export_onnx
    from ..models import StackedHourglass

    try:
        checkpoint, onnx = Path(args.checkpoint), Path(args.onnx)
        check_writable(onnx, "--onnx")
        if onnx.suffix.lower() != ".onnx":  # never over a checkpoint, its config.yaml, an image, ...
            raise ValueError(f"--onnx {onnx}: give a .onnx path (" + ("it is the --checkpoint it exports" if
                             onnx.resolve() == checkpoint.resolve() else "a file of another kind is not replaced") +
                             ")")
        model = StackedHourglass.from_checkpoint(checkpoint)
        diff = export_onnx(model, args.onnx, _input_size(args, checkpoint), args.opset, check=not args.no_check,
                           last_stack=args.last_stack)
    except (ValueError, OSError, ImportError) as exc:
        return fail("export", as_flag(exc) if isinstance(exc, ValueError) else exc)
    check = "" if diff is None else f"; onnxruntime max |diff| vs PyTorch = {diff:.3g}"
    print(f"wrote {args.onnx}{check}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="export the (unfused) model to ONNX")
    p.add_argument("--onnx", required=True, metavar="PATH", help="output .onnx file")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input-size", type=parse_input_size, metavar="S|HxW", help="input size, S or HEIGHTxWIDTH "
                   "(default: the training data's, stored in the checkpoint (or its config.yaml), else 256)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--last-stack", action="store_true", help="output the last stack's heatmaps (B, K, H/4, W/4) "
                   "alone, the prediction inference decodes (default: every stack's, (B, nstack, K, H/4, W/4))")
    p.set_defaults(func=_cmd_export)
