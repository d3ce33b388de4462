/*! sessionwatch-node v0.1.0 | MIT */
/*
 * A thin client of the sessionwatch session API (docs/any-stack.md) for Node apps
 * behind a reverse proxy: no dependencies (Node >= 18's fetch).
 *
 *   const { SessionAPI } = require("sessionwatch-node");
 *   const api = new SessionAPI("http://127.0.0.1:8000", process.env.SESSIONWATCH_API_KEY);
 *   const result = await api.login("alice", { cookie: req.headers.cookie,
 *     userAgent: req.headers["user-agent"], clientIp: req.ip });
 *   res.append("Set-Cookie", result.cookie.set_cookie);
 *
 * A refused call rejects with a SessionAPIError carrying the documented status and code
 * (status 0, code "unreachable", when the service cannot be reached).
 */
"use strict";

const DEFAULT_PREFIX = "/_sessionwatch/api/v1";

class SessionAPIError extends Error {
  constructor(status, code, message, body) {
    super(status + " " + code + ": " + message);
    this.name = "SessionAPIError";
    this.status = status;
    this.code = code;
    this.body = body || {};
  }
}

class SessionAPI {
  /**
   * @param {string} baseUrl where sessionwatch serve (or its API address) listens
   * @param {string} apiKey one of the service's SESSIONWATCH_API_KEYS
   * @param {{prefix?: string, timeout?: number}} [options] timeout in milliseconds (5000)
   */
  constructor(baseUrl, apiKey, options) {
    const url = new URL(baseUrl);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError("baseUrl must be an http(s) URL");
    if (!apiKey) throw new TypeError("apiKey is required");
    options = options || {};
    this.base = String(baseUrl).replace(/\/+$/, "") + (options.prefix || DEFAULT_PREFIX);
    this.apiKey = apiKey;
    this.timeout = options.timeout || 5000;
  }

  /** Sign the browser's session in as user; relay result.cookie.set_cookie and
   * result.remember_cookie.set_cookie (options.remember: a remember-me cookie). */
  login(user, options) {
    options = options || {};
    return this._call("POST", "/login", {
      user: user,
      cookie: options.cookie,
      user_agent: options.userAgent,
      client_ip: options.clientIp,
      revoke_others: options.revokeOthers,
      remember: options.remember
    });
  }

  /** Finish a sign-in that login left pending under the ask policy (its 409
   * session_choice_required: error.body.pending, error.body.sessions): sign out the sessions
   * the user chose (evict: their ids), from the same browser (options.cookie). */
  completeLogin(pending, evict, options) {
    options = options || {};
    return this._call("POST", "/complete-login", {
      pending: pending,
      evict: evict,
      cookie: options.cookie,
      user_agent: options.userAgent,
      client_ip: options.clientIp
    });
  }

  /** The user proved who they are again (step-up: /verify?max_age= passes from now). */
  reauthenticated(cookie) {
    return this._call("POST", "/reauthenticated", { cookie: cookie || "" });
  }

  /** End the browser's session (cookie: its Cookie header); relay result.cookie.set_cookie. */
  logout(cookie) {
    return this._call("POST", "/logout", { cookie: cookie || "" });
  }

  /** Revoke {session} or a {user}'s sessions (but {exceptSession}); resolves to the count. */
  async revoke(options) {
    options = options || {};
    const body = await this._call("POST", "/revoke", {
      session: options.session,
      user: options.user,
      except_session: options.exceptSession,
      reason: options.reason
    });
    return body.revoked;
  }

  /** The user's live sessions, oldest first (every page, 100 a call). */
  async sessions(user) {
    const sessions = [];
    let cursor = null;
    for (let page = 0; page < 100; page++) { // bounded, should a server never end the list
      const query = { user: user, limit: "100" };
      if (cursor) query.cursor = cursor;
      const body = await this._call("GET", "/sessions?" + new URLSearchParams(query), null);
      sessions.push(...body.sessions);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return sessions;
  }

  async _call(method, path, body) {
    const headers = { Authorization: "Bearer " + this.apiKey, Accept: "application/json" };
    const init = { method: method, headers: headers, signal: AbortSignal.timeout(this.timeout) };
    if (body) {
      const clean = {};
      for (const key of Object.keys(body)) if (body[key] !== undefined && body[key] !== null) clean[key] = body[key];
      init.body = JSON.stringify(clean);
      headers["Content-Type"] = "application/json";
    }
    let answer;
    try {
      answer = await fetch(this.base + path, init);
    } catch (error) {
      throw new SessionAPIError(0, "unreachable", String(error && error.message), {});
    }
    let parsed = null;
    try {
      parsed = await answer.json();
    } catch (error) {
      parsed = null;
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new SessionAPIError(answer.status, "bad_response", "the answer is not a JSON object", {});
    }
    if (answer.status >= 400) {
      throw new SessionAPIError(answer.status, String(parsed.error || "error"), String(parsed.message || parsed.error), parsed);
    }
    return parsed;
  }
}

module.exports = { SessionAPI, SessionAPIError, DEFAULT_PREFIX };
