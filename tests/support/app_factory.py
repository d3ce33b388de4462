"""A small Quart app wired to sessionwatch, for the HTTP and WebSocket tests."""

from __future__ import annotations

from typing import Any

from quart import Quart, jsonify, request, session, websocket

from sessionwatch import Policy, SessionWatch

SECRET = "test-secret-key-that-is-long-enough"


def make_app(
    backend: Any, *, policy: Policy | None = None, clock: Any = None, **options: Any
) -> Quart:
    """An app with login/logout, session data routes and one protected route."""
    app = Quart(__name__)
    app.config["SECRET_KEY"] = SECRET
    watch = SessionWatch(app, backend=backend, policy=policy or Policy(), clock=clock, **options)

    @app.post("/login")
    async def login() -> Any:
        body = await request.get_json(force=True, silent=True) or {}
        form = await request.form
        user = body.get("user") or form.get("user")
        evicted = await watch.login(user, remember=bool(body.get("remember")))
        session["user"] = user
        return jsonify({"user": user, "evicted": evicted})

    @app.post("/complete-login")
    async def complete_login() -> Any:
        body = await request.get_json(force=True, silent=True) or {}
        evicted = await watch.complete_login(body.get("pending"), body.get("evict") or [])
        return jsonify({"evicted": evicted})

    @app.post("/reauth")
    async def reauth() -> Any:
        await watch.reauthenticated()  # the password was checked (here: trusted)
        return jsonify({"ok": True})

    @app.post("/sensitive")
    @watch.recent_login_required(max_age=300)
    async def sensitive() -> Any:
        return jsonify({"ok": True})

    @app.post("/logout")
    async def logout() -> Any:
        await watch.logout()
        return jsonify({"ok": True})

    @app.get("/data")
    async def get_data() -> Any:
        return jsonify(dict(session))

    @app.post("/data")
    async def set_data() -> Any:
        body = await request.get_json()
        for key, value in body.items():
            session[key] = value
        return jsonify(dict(session))

    @app.post("/data/append")
    async def append_data() -> Any:
        session.setdefault("items", [])
        session["items"].append((await request.get_json())["item"])  # nested change
        return jsonify(dict(session))

    @app.get("/public")
    async def public() -> Any:
        return jsonify({"public": True})

    @app.post("/transfer")
    @watch.active_tab_required
    async def transfer() -> Any:
        return jsonify({"ok": True})

    @app.websocket("/ws-data")
    async def ws_data() -> None:
        await websocket.accept()
        session["from_ws"] = await websocket.receive()
        await websocket.send("saved")

    return app


def watch_of(app: Quart) -> SessionWatch:
    watch: SessionWatch = app.extensions["sessionwatch"]
    return watch


API_KEYS = ("first-api-key-0123456789abcdef", "second-api-key-0123456789abcdef")


def make_proxy_app(backend: Any, *, api_keys: tuple[str, ...] = API_KEYS, **options: Any) -> Quart:
    """:func:`make_app` plus what the service adds for proxies: ``/verify``,
    ``/refusal`` and the session API (docs/any-stack.md)."""
    from sessionwatch.service.app import register_proxy_endpoints

    app = make_app(backend, api_keys=api_keys, **options)
    register_proxy_endpoints(app)
    return app
