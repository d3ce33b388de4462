"""Benchmarks of issue #6: push latency, throughput, memory per tab, request overhead,
fan-out and reconnect storms, side by side with python-socketio in one run.

Run ``python -m tests.bench run`` (``--quick``, ``--smoke``) from the repository root;
see docs/performance.md. Not collected by the default test run except
``test_bench_smoke.py``.
"""
