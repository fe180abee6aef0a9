"""``python -m webapp serve ...``: the duckpulse command line with the dashboard."""

import sys

from .cli import main

sys.exit(main())
