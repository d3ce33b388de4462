"""The proxy demo: nginx in front of a Flask and an Express app, with ``sessionwatch
serve`` as nginx's forward-auth service and the apps' session API.

``python -m sessionwatch.demo.proxy`` starts it all on loopback (docs/any-stack.md).
"""

from __future__ import annotations

from .nginx import nginx_config
from .runner import ProxyDemo

__all__ = ["ProxyDemo", "nginx_config"]
