"""Integrations, one module per foreign library, each importing it lazily and saying what to install if missing.

``wsgi`` (any WSGI app), ``flask`` (``DuckPulse``), ``asgi`` (Starlette, FastAPI, any ASGI app), ``dbapi``
(``instrument(connection)``), ``sqlalchemy`` (engine events). Import the one you use; this package imports none.
"""
