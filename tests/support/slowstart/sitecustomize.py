"""Slow process starts on demand (``tests/integration/test_sighup_restart.py``): loaded by
Python at start-up from ``PYTHONPATH``; when the file ``$SLOW_START_FILE`` exists, every
process started from then on sleeps the seconds it holds before anything else, as a
worker importing everything anew on a loaded machine does."""

import os
import time

_path = os.environ.get("SLOW_START_FILE", "")
if _path and os.path.exists(_path):
    with open(_path) as _file:
        time.sleep(float(_file.read().strip() or 0))
