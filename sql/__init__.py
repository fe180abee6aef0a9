"""The named SQL blocks, shipped inside the wheel as the package ``pipeline.sql`` (see ``pipeline/sqlfiles.py``)."""
