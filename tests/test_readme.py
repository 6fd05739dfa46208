"""The README's command lines stay true: each ``hgfast`` line of its bash blocks parses with today's CLI."""
import re
import shlex
from pathlib import Path

import pytest

from hgfast.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
PLACEHOLDERS = {"x,y,w,h": "10,10,50,80", "--oks-sigmas ...": "--oks-sigmas 0.1", "--category-id N": "--category-id 1"}


def _command_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    return [line for block in blocks for line in block.splitlines() if re.match(r"(hgfast|torchrun) ", line)]


def _arguments(line: str) -> list[str]:
    """The line's arguments: its comment dropped, optional ``[...]`` parts kept, the first of ``a|b`` choices."""
    command = re.split(r"\s{2,}#", line)[0]
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    command = re.sub(r"^torchrun .*? -m hgfast\.cli ", "hgfast ", command)
    command = command.replace("[", "").replace("]", "").replace(" ...", "")
    return [arg.split("|")[0] for arg in shlex.split(command)[1:]]


def test_the_readme_has_command_lines():
    assert len(_command_lines()) >= 20


@pytest.mark.parametrize("line", _command_lines())
def test_readme_command_line_parses(line):
    args = build_parser().parse_args(_arguments(line))
    assert callable(args.func)
