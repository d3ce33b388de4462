"""The benchmark's peers (docs/performance.md, "Peers"): the same job as sessionwatch's
tab takeover, built the way each stack documents it. ``socketio-node/`` is the Node
Socket.IO app (its own package-lock.json); the Python peers are modules here, pinned in
``requirements.txt``; python-socketio's app is ``tests/bench/socketio_app.py``."""
