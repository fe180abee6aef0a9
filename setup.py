"""Build configuration that pyproject.toml cannot hold: the optional C recorder (pipeline/_record.c) and the
optional C fingerprint fast path (pipeline/_fastfp.c).

``optional=True``: where it cannot be compiled (no C compiler, no Python headers), the install goes on without it
and ``Monitor.track_request`` runs in pure Python (README, "The C recorder"), the fingerprint fast path in
Python passes (pipeline/fingerprint/fast.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("pipeline._record", ["pipeline/_record.c"], optional=True),
                   Extension("pipeline._fastfp", ["pipeline/_fastfp.c"], optional=True)])
