"""The ``hgfast`` command line."""
from __future__ import annotations

import argparse
import re
import sys


def _cmd_summary(args: argparse.Namespace) -> int:
    from .data.crop import crop_size
    from .models import StackedHourglass
    from .summary import format_table, summarize

    try:
        model = StackedHourglass(nstack=args.nstack, nfeat=args.nfeat, njoints=args.njoints, depth=args.depth,
                                 stem_channels=args.stem_channels)
        height, width = crop_size(args.input, "--input", model.input_multiple)
    except ValueError as exc:
        raise SystemExit(f"hgfast summary: error: {exc}") from None
    print(f"StackedHourglass(nstack={args.nstack}, nfeat={args.nfeat}, njoints={args.njoints}, depth={args.depth}, "
          f"stem_channels={args.stem_channels}), "
          f"input {height}x{width}")
    print(format_table(summarize(model, (height, width))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hgfast", description="Fast Stacked Hourglass pose estimation.")
    from .commands import parse_input_size, register

    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="per-block output shapes, parameters and MACs")
    summary.add_argument("--nstack", type=int, default=8)
    summary.add_argument("--nfeat", type=int, default=256)
    summary.add_argument("--njoints", type=int, default=16)
    summary.add_argument("--depth", type=int, default=4, help="levels of each hourglass (inputs are multiples of "
                         "4 * 2**depth pixels)")
    summary.add_argument("--stem-channels", type=int, default=128, help="width between the stem's last two "
                         "residuals (256 for bearpaw's and anibali's models)")
    summary.add_argument("--input", type=parse_input_size, default=256, metavar="S|HxW",
                         help="input size in pixels, S or HEIGHTxWIDTH")
    summary.set_defaults(func=_cmd_summary)
    register(sub)
    return parser


def _attach_negative_boxes(argv: list[str]) -> list[str]:
    """``--box -10,-5,80,90`` as ``--box=-10,-5,80,90``: argparse takes a value starting with '-' (other than one
    plain number) for an option, and boxes may start left of or above the image."""
    out = []
    for arg in argv:
        if out and out[-1] == "--box" and re.fullmatch(r"-[\d.][^,]*(,[^,]*)*", arg):
            out[-1] = f"--box={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(_attach_negative_boxes(sys.argv[1:] if argv is None else list(argv)))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
