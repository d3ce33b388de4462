"""``python -m tests.faults [--minutes N]``: the fault-injection suite (issue 13)."""

import sys
from pathlib import Path

# The suite imports the tests' support package as the test run does (pythonpath=tests).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from .runner import main

if __name__ == "__main__":
    raise SystemExit(main())
