"""The ``hgfast`` command line."""
from __future__ import annotations

import argparse
import sys


def _cmd_summary(args: argparse.Namespace) -> int:
    from .models import StackedHourglass
    from .summary import format_table, summarize

    try:
        model = StackedHourglass(nstack=args.nstack, nfeat=args.nfeat, njoints=args.njoints)
    except ValueError as exc:
        raise SystemExit(f"hgfast summary: error: {exc}") from None
    if args.input < 1 or args.input % model.input_multiple:
        raise SystemExit(f"hgfast summary: error: --input must be a positive multiple of {model.input_multiple}, "
                         f"got {args.input}")
    print(f"StackedHourglass(nstack={args.nstack}, nfeat={args.nfeat}, njoints={args.njoints}), "
          f"input {args.input}x{args.input}")
    print(format_table(summarize(model, args.input)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hgfast", description="Fast Stacked Hourglass pose estimation.")
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="per-block output shapes, parameters and MACs")
    summary.add_argument("--nstack", type=int, default=8)
    summary.add_argument("--nfeat", type=int, default=256)
    summary.add_argument("--njoints", type=int, default=16)
    summary.add_argument("--input", type=int, default=256, help="input height = width in pixels")
    summary.set_defaults(func=_cmd_summary)
    from .commands import register

    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
