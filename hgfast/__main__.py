"""``python -m hgfast ...``: the ``hgfast`` command (``hgfast.cli``)."""
import sys

from .cli import main

sys.exit(main())
