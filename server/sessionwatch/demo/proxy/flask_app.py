"""The Flask upstream of the proxy demo: no sessionwatch code but its login and
logout calls to the session API. nginx tells it who the user is
(``X-SessionWatch-User``) and refuses stale tabs before a request reaches it.

Run by :class:`~sessionwatch.demo.proxy.ProxyDemo`; alone:
``SESSIONWATCH_URL=… SESSIONWATCH_API_KEY=… python -m sessionwatch.demo.proxy.flask_app PORT``.
"""

from __future__ import annotations

import hmac
import os
import sys
from urllib.parse import unquote

from flask import Flask, jsonify, redirect, render_template_string, request
from flask.typing import ResponseReturnValue

from sessionwatch.client import SessionAPI, SessionAPIError

__all__ = ["create_flask_app"]

PASSWORD = "demo"  # noqa: S105 (the documented password of every demo account)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flask behind nginx</title>
{% if user %}<script src="/_sessionwatch/client.js" defer data-signin-url="/login"></script>{% endif %}
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}</style>
</head><body>
<h1>Flask behind nginx</h1>
{% if user %}
<p>Signed in as <strong id="user">{{ user }}</strong>. This page knows nothing of
sessionwatch: nginx asks it about every request.</p>
<p><button id="transfer" type="button" data-sessionwatch-protected>Transfer 10 coins</button>
<span id="result" aria-live="polite"></span></p>
<form method="post" action="/logout"><button type="submit" data-sessionwatch-skip>Sign out</button></form>
<script>
document.getElementById("transfer").addEventListener("click", async () => {
  const answer = await fetch("/api/transfer", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({amount: 10})});
  const body = await answer.json().catch(() => ({}));
  document.getElementById("result").textContent = answer.status + " " + (body.message || body.error || "");
});
</script>
{% else %}
<form method="post" action="/login">
  {% if error %}<p id="error">{{ error }}</p>{% endif %}
  <label>User <input name="username" autocomplete="username"></label>
  <label>Password <input name="password" type="password" value=""> (it is “demo”)</label>
  <button type="submit">Sign in</button>
</form>
{% if sso_login %}<p><a id="sso-sign-in" href="{{ sso_login }}?next=/">Sign in with your identity provider</a></p>{% endif %}
{% endif %}
</body></html>
"""


def create_flask_app(api: SessionAPI) -> Flask:
    """The demo app, talking to sessionwatch through ``api``."""
    app = Flask(__name__)

    def current_user() -> str | None:
        raw = request.headers.get("X-SessionWatch-User", "")
        return unquote(raw) or None

    @app.get("/")
    def home() -> ResponseReturnValue:
        user = current_user()
        if user is None:
            return redirect("/login")
        return render_template_string(PAGE, user=user, error=None)

    # Single sign-on is the service's (docs/sso.md): the app only links to it.
    sso_login = os.environ.get("SESSIONWATCH_SSO_LOGIN", "")

    @app.get("/login")
    def login_form() -> ResponseReturnValue:
        return render_template_string(PAGE, user=None, error=None, sso_login=sso_login)

    @app.post("/login")
    def login() -> ResponseReturnValue:
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if not username or len(username) > 64 or not hmac.compare_digest(password, PASSWORD):
            return render_template_string(PAGE, user=None, error="Wrong user or password."), 401
        try:
            result = api.login(
                username,
                cookie=request.headers.get("Cookie"),
                user_agent=request.headers.get("User-Agent"),
                client_ip=request.headers.get("X-Real-IP") or request.remote_addr,
            )
        except SessionAPIError as error:
            if error.code == "session_limit_reached":
                message = f"You already have {error.body.get('limit')} active session(s)."
                return render_template_string(PAGE, user=None, error=message), 403
            raise
        response = redirect("/")
        response.headers.add("Set-Cookie", result["cookie"]["set_cookie"])
        return response

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        result = api.logout(cookie=request.headers.get("Cookie", ""))
        response = redirect("/login")
        response.headers.add("Set-Cookie", result["cookie"]["set_cookie"])
        return response

    @app.post("/api/transfer")
    def transfer() -> ResponseReturnValue:
        user = current_user()
        if user is None:  # nginx let an anonymous session through: the app decides
            return jsonify({"error": "not_signed_in", "message": "Sign in first."}), 401
        body = request.get_json(silent=True) or {}
        amount = body.get("amount", 10) if isinstance(body, dict) else None
        if (
            isinstance(amount, bool)
            or not isinstance(amount, (int, float))
            or not 0 < amount <= 1e6
        ):
            return jsonify({"error": "bad_request", "message": "amount must be 0-1,000,000"}), 400
        return jsonify({"ok": True, "user": user, "message": f"Transferred {amount:g} coins."})

    @app.route("/api/ping", methods=["GET", "POST"])
    def ping() -> ResponseReturnValue:
        """The same small answer with or without a user (the benchmark's route)."""
        return jsonify({"pong": True})

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return "ok"

    return app


def main() -> None:
    """Serve on 127.0.0.1:``argv[1]`` (werkzeug, threaded)."""
    port = int(sys.argv[1])
    api = SessionAPI(os.environ["SESSIONWATCH_URL"], os.environ["SESSIONWATCH_API_KEY"])
    create_flask_app(api).run(host="127.0.0.1", port=port, threaded=True)


if __name__ == "__main__":
    main()
