"""The demo app: every sessionwatch capability in a browser (the Procfile target).

Demo accounts: any username, password ``demo``. See README.md.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
