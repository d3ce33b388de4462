"""The demo apps: every sessionwatch capability in a browser (``sessionwatch demo``),
and the proxy demo (``python -m sessionwatch.demo.proxy``). Applications of the public
API, never part of the production service.

Demo accounts: any username, password ``demo``. See README.md.
"""

from __future__ import annotations

from .app import create_app, create_demo_app

__all__ = ["create_app", "create_demo_app"]
