"""A host's wall clock that the fault suite can step (the ``clock_step`` fault).

Loaded by Python at start-up from ``PYTHONPATH`` in the processes of one simulated host
(``tests/faults/topology.py``: ``Host.step_clock``; ``tests/backends/test_deadline.py``): ``time.time`` and ``time.time_ns`` return the real
time plus the offset in seconds written in ``$FAULTS_CLOCK_OFFSET_FILE`` (re-read at most
every 50 ms of the monotonic clock), as after an NTP step or a hand-set clock on that
host only. The monotonic clocks are untouched, as in a real step. libfaketime cannot do
this here: 0.9.10 with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` makes Python's ``time.sleep``
fail (``EINVAL`` from ``clock_nanosleep``).
"""

import os
import time

_path = os.environ.get("FAULTS_CLOCK_OFFSET_FILE", "")
if _path:
    _real_time, _real_time_ns, _monotonic = time.time, time.time_ns, time.monotonic
    _state = [0.0, -1.0]  # offset (s), when read (monotonic)

    def _offset() -> float:
        now = _monotonic()
        if now - _state[1] > 0.05:
            _state[1] = now
            try:
                with open(_path) as file:
                    _state[0] = float(file.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return _state[0]

    def _time() -> float:
        return _real_time() + _offset()

    def _time_ns() -> int:
        return _real_time_ns() + int(_offset() * 1e9)

    time.time = _time
    time.time_ns = _time_ns
