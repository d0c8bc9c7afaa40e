"""``python -m kubelambda.controller``: the operator without the ``kubelambda`` command."""

import sys

from kubelambda.controller.main import run

sys.exit(run())
