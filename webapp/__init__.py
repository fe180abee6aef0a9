"""duckpulse's dashboard: a Flask app that reads what ``pipeline.store`` wrote.

``create_app(config, monitor=...)`` builds the app; ``blueprint(monitor, url_prefix=...)`` mounts the same
dashboard inside another Flask app; ``webapp.server.DashboardServer`` serves it from the owner process.
"""

from .app import blueprint as blueprint
from .app import create_app as create_app

__all__ = ["blueprint", "create_app"]
