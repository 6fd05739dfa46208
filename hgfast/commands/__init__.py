"""``hgfast train / eval / score / convert-mpii / predict / video / export``: argument parsing and the glue to the
library, one module per command (``files``: the commands on files alone).

Errors the user can fix (missing files, bad config keys, bad boxes) end with ``hgfast <cmd>: error: ...`` and
exit status 2, without a traceback.
"""
from __future__ import annotations

from . import evaluate, export, files, predict, train, video
from .common import fail, parse_input_size

__all__ = ["register", "fail", "parse_input_size"]


def register(sub) -> None:
    """Add the subcommands to the ``hgfast`` parser's subparsers, in the order ``hgfast --help`` lists them."""
    for module in (train, evaluate, files, predict, video, export):
        module.add_parsers(sub)
