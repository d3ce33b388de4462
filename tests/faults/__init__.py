"""The fault-injection suite of issue 13: real processes on simulated hosts (network
namespaces), a workload recording every request and push, faults on a schedule and
the invariants checked over the whole history. ``python -m tests.faults --minutes 30``
runs the soak; ``test_short_schedule.py`` runs a short schedule in the default run."""
