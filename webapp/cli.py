"""The ``duckpulse`` command with the dashboard: ``duckpulse serve`` then serves it beside the jobs.

``pipeline.cli`` cannot import webapp (pipeline never imports webapp), so this entry point hands it the
dashboard: ``python -m webapp serve --db metrics.duckdb --spool spool --port 8050``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pipeline import cli

from .server import check, start


def main(argv: Sequence[str] | None = None) -> int:
    """Run the duckpulse command line, with ``serve`` serving the dashboard."""
    return cli.main(argv, dashboard=start, dashboard_check=check)


if __name__ == "__main__":  # pragma: no cover - `python -m webapp.cli`
    sys.exit(main())
