"""duckpulse's dashboard: a Flask app that reads what ``pipeline.store`` wrote (see issue 5)."""
