"""When a sessionwatch route may skip part of Quart's request handling.

Two shortcuts depend on what an app registered, and both ask here:

- :func:`nothing_before_view`: ``POST {url_prefix}/claim`` leaves a genuine cookie's
  session unloaded for the claim to load (one backend round trip instead of two), when
  nothing could read the session before the view.
- :func:`only_the_view`: ``POST /claim`` and ``GET /state`` (and forward-auth's
  ``GET /verify``) are served on raw ASGI
  (:mod:`sessionwatch.web.rawhttp`) when Quart's handling would run nothing of the app
  but sessionwatch's own view, its ``after_request`` and its session interface, so the
  answer cannot differ by a byte.

The Quart internals read here (checked against Quart 0.22.0): the app's hook registries
(``before_request_funcs``, ``after_request_funcs``, ``teardown_request_funcs``,
``teardown_appcontext_funcs``, ``url_value_preprocessors``, ``error_handler_spec``), the
signals below, ``request_class``/``response_class``, and the JSON provider's
``response`` method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from quart.json.provider import DefaultJSONProvider
from quart.signals import (
    appcontext_popped,
    appcontext_pushed,
    appcontext_tearing_down,
    got_request_exception,
    request_finished,
    request_started,
    request_tearing_down,
)
from quart.wrappers import Request, Response
from werkzeug.exceptions import InternalServerError

if TYPE_CHECKING:
    from quart import Quart

__all__ = ["nothing_before_view", "only_the_view"]

# Signals Quart sends while handling a request: a receiver would miss the raw path's.
_REQUEST_SIGNALS = (
    request_started,
    request_finished,
    request_tearing_down,
    got_request_exception,
    appcontext_pushed,
    appcontext_popped,
    appcontext_tearing_down,
)


def nothing_before_view(app: Quart, blueprint: str) -> bool:
    """True when nothing of the app runs between opening the session and a view of
    ``blueprint``: no app-wide or blueprint ``before_request`` or URL value
    preprocessor, no ``request_started`` receiver."""
    for scope in (None, blueprint):
        if app.before_request_funcs.get(scope) or app.url_value_preprocessors.get(scope):
            return False
    return not request_started.receivers


def only_the_view(
    app: Quart,
    blueprint: str,
    *,
    after_request: Callable[..., Any],
    session_interface: object,
    error_handlers: Mapping[type[Exception], Callable[..., Any]],
) -> bool:
    """True when Quart's handling of a request to a view of ``blueprint`` would run
    nothing but the view and sessionwatch's own parts: :func:`nothing_before_view`, the
    blueprint's one ``after_request`` (``after_request``) and none app-wide, no
    teardown function, no receiver of a request or app-context signal, the
    extension's ``session_interface``, the ``error_handlers`` the extension registered
    app-wide, none on the blueprint and none for an unexpected error (a 500), Quart's own request, response and JSON-answer
    classes, compact JSON, no ``SERVER_NAME``, ``APPLICATION_ROOT`` ``/``, and no host
    or subdomain matching."""
    if not nothing_before_view(app, blueprint):
        return False
    config = app.config
    if (
        config["SERVER_NAME"] is not None
        or config["APPLICATION_ROOT"] != "/"
        or app.url_map.host_matching
        or app.subdomain_matching
        or app.session_interface is not session_interface
        or app.request_class is not Request
        or app.response_class is not Response
        or type(app.json).response is not DefaultJSONProvider.response
        or app.after_request_funcs.get(None)
        or app.after_request_funcs.get(blueprint) != [after_request]
        or app.teardown_request_funcs.get(None)
        or app.teardown_request_funcs.get(blueprint)
        or app.teardown_appcontext_funcs
        or app.error_handler_spec.get(blueprint)
    ):
        return False
    handlers = app.error_handler_spec.get(None, {})
    registered = handlers.get(None, {})
    if any(registered.get(kind) != handler for kind, handler in error_handlers.items()):
        return False
    # An unexpected error is answered with Quart's plain 500 page: only if no handler
    # of the app would answer it instead.
    if handlers.get(500) or any(kind in registered for kind in InternalServerError.__mro__):
        return False
    return not any(signal.receivers for signal in _REQUEST_SIGNALS)
