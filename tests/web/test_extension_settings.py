"""The extension refuses a configuration it cannot run safely, with a clear message."""

from __future__ import annotations

import pytest
from quart import Quart

from sessionwatch import ConfigurationError, SessionWatch


def test_extension_needs_a_long_enough_secret() -> None:
    app = Quart(__name__)
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        SessionWatch(app)
    app.config["SECRET_KEY"] = "short"
    with pytest.raises(ConfigurationError, match="at least"):
        SessionWatch(app)
    with pytest.raises(ConfigurationError, match="unknown option"):
        SessionWatch(app, idle_timout=5)
