"""``duckpulse demo``: a sample bookshop (Flask + SQLite) under generated traffic, with the jobs, alerts and the
dashboard running.

``bookshop`` is the instrumented sample app, ``traffic`` the request generator, ``runner`` the owner, the
producer processes and the terminal output.
"""

from .runner import DemoSettings as DemoSettings
from .runner import format_table as format_table
from .runner import run as run

__all__ = ["DemoSettings", "format_table", "run"]
