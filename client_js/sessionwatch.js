/*! sessionwatch v0.1.0 | MIT */
/*
 * The browser client of sessionwatch: claims this tab, keeps a WebSocket to the server,
 * attaches the tab token to the app's own requests and tells the user, live, why this tab
 * stopped working. The server is the authority; this file only displays its verdicts.
 * Wire protocol: docs/protocol.md (version 1).
 *
 * Use: <script src="/_sessionwatch/client.js" defer></script> starts by itself and defines
 * exactly one global, SessionWatch. It autostarts only as its own <script> tag: a tag whose
 * file is client.js, sessionwatch.js or sessionwatch.min.js, or that carries a
 * data-sessionwatch attribute. Inside a bundle (any other file name) nothing starts and the
 * bundle's data-* are not read: call start(). As an ES module (sessionwatch.mjs) it never
 * starts by itself. start(options) after an autostart re-configures the running client.
 *
 * Settings: data-* attributes of this <script> tag (data-signin-url="/login") or
 * SessionWatch.start({signinUrl: "/login"}); start()'s options win over data-*.
 *
 *   prefix            "/_sessionwatch"  API path. When this file is served from a
 *                                        same-origin URL ending in /client.js, that directory.
 *   autostart         true        start on load (data-autostart="false": call start() yourself)
 *   attach            true        add the tab token to same-origin fetch, XHR and POST forms
 *   mode              "banner"    terminal states: "banner" (page stays readable, protected
 *                                 elements disabled) or "overlay" (modal; the page is inert)
 *   placement         "bottom"    where the banner and toast sit: "bottom" (never over the
 *                                 page's header) or "top"
 *   signinUrl         "/login"    "Sign in again" opens signinUrl?next=<this page>
 *   reauthUrl         signinUrl   "Not you?" opens reauthUrl?next=<this page>&revoke_others=1;
 *                                 "Confirm" (a request answered 401 reauth_required, step-up)
 *                                 opens reauthUrl?next=<this page>
 *   pollInterval      30          seconds between GET {prefix}/state without WebSocket
 *   protectedSelector "[data-sessionwatch-protected], form[method=post i] button,
 *                      form[method=post i] input[type=submit]"
 *                                 disabled while this tab may not act, except what is (or
 *                                 sits in) an element with data-sessionwatch-skip, and a
 *                                 sign-out form (signOutPattern)
 *   signOutPattern    "\\b(log|sign)[-_]?(out|off)/?$"
 *                                 a POST form (or button formaction) whose path matches it
 *                                 (case-insensitive) is a sign-out form: never disabled, so
 *                                 signing out works from any tab ("" turns this off)
 *   lang              ""          language of the texts; "" = <html lang>, then
 *                                 navigator.language. de, es, fr, ja load {prefix}/i18n/<lang>.json
 *   strings           {}          overrides of single texts (data-strings: JSON); a text with
 *                                 {n} may be {one: "…", other: "…"} (Intl.PluralRules)
 */
(function (G) {
  "use strict";
  if (G.SessionWatch) {
    if (typeof module == "object" && module && module.exports) module.exports = G.SessionWatch;
    return;
  }

  var VERSION = "0.1.0";
  var HEADER = "X-SessionWatch-Tab";
  var FIELD = "_sessionwatch_tab";
  // The WebSocket close codes this client acts on: names and values as in the table of
  // docs/protocol.md §3 and sessionwatch.events.CloseCode (tests/test_js_constants.py).
  var CloseCode = {
    EXPIRED: 4002,
    REVOKED: 4003,
    LOGGED_OUT: 4004,
    EVICTED: 4005,
    UNSUPPORTED_VERSION: 4006,
    TAB_INVALID: 4007,
    TOO_MANY_SOCKETS: 4011,
    ROTATED: 4013
  };
  // The lifecycle: one value, never a set of booleans. State.ACTIVE == "active", …; the
  // four last are terminal.
  var State = {};
  "stopped unsupported starting active superseded evicted revoked logged_out expired".replace(/\w+/g, function (name) {
    State[name.toUpperCase()] = name;
  });
  var LANGS = /^(de|es|fr|ja)\b/i; // bundled translations besides English: i18n/<lang>.json

  // English texts. {device}, {when} and {n} are filled in; every text reaches the page
  // through textContent only, never as HTML.
  var STRINGS = {
    superseded: "This app is open in another tab.",
    supersededBy: "This app was opened on {device}, {when}.",
    useHere: "Use here",
    signOutOthers: "Not you? Sign out other sessions",
    evicted: "You were signed out because of a new sign-in on {device}.",
    revoked: "This session was signed out.",
    revoked_admin: "An administrator signed you out.",
    revoked_password_changed: "You were signed out because the password changed.",
    revoked_signed_out_at_provider: "You signed out at your identity provider.",
    logged_out: "You have been signed out.",
    expired: "Your session expired.",
    signIn: "Sign in again",
    expiring: "You will be signed out in {n} s.", // or {one: "… {n} second.", other: "… {n} seconds."}
    stay: "Stay signed in",
    signedIn: "New sign-in: {device}.",
    notYou: "Not you?",
    reauth: "Confirm it's you to continue.",
    confirm: "Confirm",
    dismiss: "Dismiss",
    device: "{browser} on {os}",
    unknownDevice: "another device",
    newDevice: " (new device)",
    newPlace: " (new place)",
    justNow: "just now",
    minutesAgo: "{n} min ago",
    hoursAgo: "{n} h ago",
    daysAgo: "{n} d ago"
  };

  var doc = G.document;
  var loc = G.location;
  var visual = G.visualViewport; // what the screen shows of the page (see fit)
  var script = doc && doc.currentScript;
  // Its own <script> tag, not a bundle that contains this file (see the rule above).
  var own = script && (script.hasAttribute("data-sessionwatch") || /\/(client|sessionwatch(\.min)?)\.js([?#]|$)/.test(script.src));
  var supported = !!(doc && loc && G.fetch && G.Promise && G.URL && G.Headers && G.CustomEvent);
  var nativeFetch = G.fetch;
  var handlers = {};
  var recent = {}; // the events of the current state, for listeners that come late

  var opts = {};
  var text = STRINGS;
  var lang = "en"; // the language of `text`
  var installed = false;
  var state = State.STOPPED;
  var link = ""; // how we hear the server: "" (WebSocket), "poll" (GET /state), "wait" (for focus)
  var token = null; // "{gen}.{mac}", see protocol §1
  var gen = null; // the generation of our token
  var session = null; // the public session id
  var expiresAt = null;
  var claiming = null; // the POST /claim in flight
  var socket = null;
  var channel = null; // BroadcastChannel
  var attempt = 0; // reconnects since the last "ready"
  var lastSuperseded = {};
  var lastCheck = 0;
  var pinged = false; // a ping is out, unanswered
  var retryTimer = 0, beatTimer = 0, pollTimer = 0, tickTimer = 0, toastTimer = 0;
  var styles = null; // Promise of the banner's stylesheet ({prefix}/client.css), "" if none
  var ui = null; // {host, dock, box, msg, toast}
  var shown = ""; // the state the banner shows, "" when hidden
  var reached = false; // the user went to the banner (first Tab) since it showed
  var locked = [];
  var prevFocus = null;

  function noop() {}

  function notRunning() {
    return Promise.reject(new Error("sessionwatch: not running"));
  }

  function running() {
    return state != State.STOPPED && state != State.UNSUPPORTED;
  }

  function over() {
    return /^(expired|revoked|logged_out|evicted)$/.test(state);
  }

  // {name} placeholders; a text may be {one, other, …}, the form chosen by `count`
  // (default vars.n) with Intl.PluralRules: plural-safe in every language.
  function fmt(str, vars, count) {
    if (str && typeof str == "object") {
      var form = "other";
      try {
        form = new Intl.PluralRules(lang).select(count == null ? vars.n : count);
      } catch (e) {}
      str = str[form] || str.other;
    }
    return String(str).replace(/\{(\w+)\}/g, function (all, key) {
      return vars[key] != null ? vars[key] : all;
    });
  }

  // The server marks a device or place its user has not used lately (docs/audit.md).
  function device(by) {
    by = by || {};
    var browser = by.browser, os = by.os;
    return (browser && os ? fmt(text.device, { browser: browser, os: os }) : browser || os || text.unknownDevice) +
      (by.new_device ? text.newDevice : "") + (by.new_place ? text.newPlace : "");
  }

  function ago(at) {
    var s = (Date.now() - at) / 1000;
    if (!(s >= 60)) return text.justNow;
    if (s < 3600) return fmt(text.minutesAgo, { n: Math.floor(s / 60) });
    if (s < 86400) return fmt(text.hoursAgo, { n: Math.floor(s / 3600) });
    return fmt(text.daysAgo, { n: Math.floor(s / 86400) });
  }

  function sameOrigin(url) {
    try {
      var u = new URL(url, doc.baseURI || loc.href);
      return (u.protocol == "http:" || u.protocol == "https:") && u.origin === loc.origin;
    } catch (e) {
      return false;
    }
  }

  function attaching(url) {
    return running() && opts.attach && sameOrigin(url);
  }

  // ---- events -------------------------------------------------------------------------

  // Dispatches "sessionwatch:<type>" on document, then calls on() listeners with
  // (detail, event). Returns false when someone called preventDefault(): no built-in UI.
  function emit(type, detail) {
    var event = new G.CustomEvent("sessionwatch:" + type, { detail: detail, cancelable: true });
    recent[type] = detail;
    doc.dispatchEvent(event);
    var list = (handlers[type] || []).slice();
    for (var i = 0; i < list.length; i++) call(list[i], detail, event);
    return !(event && event.defaultPrevented);
  }

  // A listener's error is reported, never stops the others (nor this client).
  function call(fn, detail, event) {
    try {
      fn(detail, event);
    } catch (error) {
      setTimeout(function () {
        throw error;
      });
    }
  }

  // A listener that comes late (a page script loaded after the claim) is called at once
  // with the last event of that type in the current state (`event` null), so it never
  // misses "claimed", "ready" or the current "state".
  function on(type, fn) {
    (handlers[type] = handlers[type] || []).push(fn);
    if (type in recent) call(fn, recent[type], null);
    return function () {
      off(type, fn);
    };
  }

  function off(type, fn) {
    var list = handlers[type] || [];
    var i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  }

  function setState(next) {
    if (next == state) return;
    var previous = state;
    state = next;
    recent = {};
    if (doc) doc.documentElement.setAttribute("data-sessionwatch-state", next);
    if (doc && G.CustomEvent) emit("state", { state: next, previous: previous });
  }

  // ---- HTTP ---------------------------------------------------------------------------

  // Our own calls use the unwrapped fetch; resolves to {ok, status, body} (body: {} unless JSON).
  function request(method, path, withToken) {
    var headers = { Accept: "application/json" };
    if (method == "POST") headers["Content-Type"] = "application/json";
    if (withToken && token) headers[HEADER] = token;
    return nativeFetch
      .call(G, opts.prefix + path, {
        method: method,
        headers: headers,
        body: method == "POST" ? "{}" : undefined,
        credentials: "same-origin",
        cache: "no-store"
      })
      .then(function (res) {
        return res.json().then(null, noop).then(function (body) {
          return { ok: res.ok, status: res.status, body: body && typeof body == "object" ? body : {} };
        });
      });
  }

  // A static file of the client (cacheable): its text, or its JSON with `json`; "" if it fails.
  function asset(path, json) {
    return nativeFetch
      .call(G, opts.prefix + path, { credentials: "same-origin" })
      .then(function (res) {
        return res.ok ? res[json ? "json" : "text"]() : "";
      })
      .then(null, function () {
        return "";
      });
  }

  function claim() {
    if (!running() || over()) return notRunning();
    if (!claiming) {
      claiming = request("POST", "/claim").then(
        function (res) {
          claiming = null;
          var body = res.body;
          if (!res.ok || typeof body.tab != "string") {
            var error = new Error("sessionwatch: claim answered " + res.status);
            error.status = res.status;
            throw error;
          }
          if (!running() || over()) return body;
          token = body.tab;
          gen = typeof body.gen == "number" ? body.gen : parseInt(token, 10);
          session = body.session;
          expiresAt = body.expires_at;
          activate();
          // exclusive === false (tabs_per_session=None): other tabs stay valid, say so.
          post({ type: "claimed", session: session, gen: gen, exclusive: body.exclusive !== false });
          emit("claimed", body);
          if (open()) hello();
          else connect();
          return body;
        },
        function (error) {
          claiming = null;
          throw error;
        }
      );
    }
    return claiming;
  }

  function extend() {
    if (!running() || !token) return notRunning();
    return request("POST", "/extend", true).then(function (res) {
      if (res.ok && res.body.expires_at) {
        extended(res.body.expires_at, true);
        return res.body;
      }
      verdict(res);
      throw new Error("sessionwatch: extend answered " + res.status);
    });
  }

  // GET /state: the server's verdict on our token (the only check without WebSocket).
  function check() {
    if (!running() || over() || !token) return Promise.resolve();
    lastCheck = Date.now();
    return request("GET", "/state", true).then(verdict, noop);
  }

  // The app's own request was refused (401/409): ask the server why, at most every 2 s.
  function recheck() {
    if (Date.now() - lastCheck > 2000) check();
  }

  // Maps an HTTP answer (GET /state, POST /extend) to a state, like the socket messages.
  function verdict(res) {
    var body = res.body, error = body.error, tab = body.tab;
    if (res.ok && body.session) session = body.session;
    if (res.status == 401) {
      // error "revoked" + reason "revoked" | "evicted" | "logged_out" | an app's code (§2);
      // a bare "evicted" / "logged_out" error is read the same way
      var why = error == "revoked" ? body.reason || error : error;
      if (why == "evicted") end(why, { type: why, by: body.by || null });
      else if (why == "logged_out") end(why, { type: why });
      else if (error == "revoked") end(error, { type: error, reason: why });
      else end("expired", { type: "expired", reason: error });
    } else if (tab == "superseded" || error == "tab_superseded") {
      supersede({ type: "superseded", gen: body.gen, by: body.by || null }, true);
    } else if (tab == "invalid" || tab == "missing" || error == "tab_invalid" || error == "tab_missing") {
      token = null; // like close 4007: claim again
      connect();
    } else if (res.ok && tab == "active" && state != "active") {
      activate();
      emit("ready", { type: "ready", gen: body.gen, expires_at: body.expires_at, session: body.session, user: body.user });
    }
  }

  // ---- socket -------------------------------------------------------------------------

  function open() {
    return socket && socket.readyState == 1;
  }

  function send(message) {
    if (open()) socket.send(JSON.stringify(message));
  }

  function hello() {
    send({ type: "hello", v: 1, tab: token });
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    if (!running() || over() || link == "wait") return;
    if (!token) {
      claim().then(null, function (error) {
        var status = error.status;
        if (status >= 400 && status < 500 && status != 408 && status != 429) {
          if (G.console) console.warn(error.message); // misconfigured (origin, prefix): give up
          stop();
        } else retry();
      });
    } else if (link || !G.WebSocket) {
      if (!pollTimer) pollTimer = setInterval(check, opts.pollInterval * 1000);
    } else if (!socket) {
      var url = (loc.protocol == "https:" ? "wss://" : "ws://") + loc.host + opts.prefix + "/ws";
      var ws = (socket = new G.WebSocket(url));
      var opened = false;
      ws.onopen = function () {
        opened = true;
        hello();
        heartbeat();
      };
      ws.onmessage = function (event) {
        var message;
        try {
          message = JSON.parse(event.data);
        } catch (e) {}
        if (pinged) heartbeat(); // any frame answers the ping
        if (message && typeof message.type == "string") receive(message);
      };
      ws.onclose = function (event) {
        if (ws === socket) closed(event.code, opened);
      };
    }
  }

  // No more socket, retries or polls.
  function quiet() {
    closeSocket();
    clearTimeout(retryTimer);
    clearInterval(pollTimer);
    pollTimer = 0;
  }

  function closeSocket() {
    var ws = socket;
    socket = null;
    clearTimeout(beatTimer);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(1000);
      } catch (e) {}
    }
  }

  // Reconnect delay (RFC 6455 §7.2.3): the first retry after a random 0–5 s, then truncated
  // exponential backoff with full jitter: random(0, min(60 s, 5 s × 2^attempt)), i.e. up
  // to 5, 10, 20, 40, 60, 60… s. "ready" resets it. `now` (4007, 4013) skips the wait
  // once, but never twice in a row without a "ready" between.
  function retry(now) {
    clearTimeout(retryTimer);
    if (!running() || over()) return;
    var delay = now && !attempt ? 0 : Math.random() * Math.min(60000, 5000 * Math.pow(2, attempt));
    attempt++;
    retryTimer = setTimeout(connect, delay);
  }

  // The server closes a socket that stays silent (heartbeat_interval + heartbeat_timeout,
  // 40 s by default), and a dead line shows only as silence: ping every 20 s, whatever the
  // server sends meanwhile; no frame within 10 s of a ping → reconnect. Re-armed from
  // onmessage, so the timers never nest deep enough for Chrome's 1-per-minute throttling
  // of background tabs.
  function heartbeat() {
    clearTimeout(beatTimer);
    pinged = false;
    beatTimer = setTimeout(function () {
      send({ type: "ping" });
      pinged = true;
      beatTimer = setTimeout(function () {
        closeSocket();
        retry();
      }, 10000);
    }, 20000);
  }

  function closed(code, opened) {
    socket = null;
    clearTimeout(beatTimer);
    if (!running() || over()) return;
    // EXPIRED, REVOKED, LOGGED_OUT, EVICTED: the tab ends in the state of that name
    var terminal = ["expired", "revoked", "logged_out", "evicted"][code - CloseCode.EXPIRED];
    if (terminal) end(terminal, { type: terminal, code: code });
    else if (code == CloseCode.UNSUPPORTED_VERSION) {
      link = "poll"; // the server speaks another protocol version: HTTP still works
      connect();
    } else if (code == CloseCode.TOO_MANY_SOCKETS) link = "wait";
    else if (code == CloseCode.TAB_INVALID) {
      token = null;
      retry(true);
    } else if (code == CloseCode.ROTATED) retry(true);
    else if (!opened) {
      // The handshake failed; a refusal (401) is invisible to scripts, so ask GET /state.
      check().then(function () {
        retry();
      });
    } else retry();
  }

  function receive(m) {
    if (!running() || over()) return;
    switch (m.type) {
      case "ready":
        attempt = 0;
        if (m.session) session = m.session;
        if (m.expires_at) expiresAt = m.expires_at;
        activate();
        emit("ready", m);
        break;
      case "superseded":
        supersede(m);
        break;
      case "evicted":
      case "revoked":
      case "logged_out":
      case "expired":
        end(m.type, m);
        break;
      case "expiring":
        expiring(m);
        break;
      case "extended":
        extended(m.expires_at, false);
        break;
      case "signed_in":
        signedIn(m);
        break;
      case "presence":
        emit(m.type, m); // for the page (a list of sessions); no built-in UI
        break;
      case "pong":
        break; // heartbeat() already noted it
      default: // unknown types are ignored (forward compatibility)
    }
  }

  // ---- BroadcastChannel: same browser, instantly ---------------------------------------

  function post(message) {
    try {
      if (channel) channel.postMessage(message);
    } catch (e) {}
  }

  // A message from another tab can mark this tab stale or move a countdown; it never makes
  // this tab active. The server then confirms (GET /state) and stays the authority.
  function broadcast(event) {
    var m = event.data;
    if (!running() || over() || !m || !session || m.session !== session) return;
    if (m.type == "claimed" && m.exclusive !== false && typeof m.gen == "number" && m.gen > gen && state == "active") {
      supersede({ type: "superseded", gen: m.gen, by: null, via: "broadcast" });
      check();
    } else if (m.type == "extended") extended(m.expires_at, false);
  }

  // ---- states -------------------------------------------------------------------------

  function activate() {
    setState(State.ACTIVE);
    if (shown == State.SUPERSEDED) hide();
    lock(false);
  }

  // `force`: the verdict of an HTTP answer, which needs no generation check.
  function supersede(m, force) {
    if (over() || !token) return;
    if (!force && typeof m.gen == "number" && !(m.gen > gen)) return; // our own or an older claim
    if (state == State.SUPERSEDED && (!m.by || (lastSuperseded.by && m.gen === lastSuperseded.gen))) return;
    lastSuperseded = m;
    setState(State.SUPERSEDED);
    if (!emit(State.SUPERSEDED, m)) return hide();
    var by = m.by;
    // Another browser (or device) may be someone else: offer "Not you?". A tab of this
    // browser (same_browser, or told through BroadcastChannel: by null) is the same person.
    var other = by && by.same_browser === false;
    var buttons = [["use-here", text.useHere, useHere]];
    if (other) buttons.push(["sign-out-others", text.signOutOthers, notYou]);
    show(State.SUPERSEDED, other ? fmt(text.supersededBy, { device: device(by), when: ago(by.at) }) : text.superseded, buttons);
    lock(true);
  }

  function end(type, m) {
    if (over()) return;
    setState(type);
    quiet();
    dismiss(); // a "New sign-in … Not you?" toast means nothing on an ended tab
    if (!emit(type, m)) {
      hide();
      return lock(false);
    }
    var message = type == State.REVOKED ? text["revoked_" + m.reason] : fmt(text[type], { device: device(m.by) });
    show(type, typeof message == "string" ? message : text.revoked, [["sign-in", text.signIn, signIn]], opts.mode == "overlay");
    lock(true);
  }

  function expiring(m) {
    if (m.expires_at) expiresAt = m.expires_at;
    if (!emit("expiring", m) || state != State.ACTIVE) return;
    var seconds = typeof m["in"] == "number" ? m["in"] : (m.expires_at - Date.now()) / 1000;
    var deadline = Date.now() + seconds * 1000;
    var form = "";
    show("expiring", "", [["stay", text.stay, stay]]);
    (function tick() {
      var left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
      var parts = fmt(text.expiring, { n: "\0" }, left).split("\0");
      // role=timer is not announced on every tick: only the number moves, the words around
      // it change only when the plural form does
      if (parts + "" != form) {
        form = parts + "";
        ui.msg.textContent = parts[0];
        ui.count = el("span", { role: "timer" }, "", ui.msg);
        el("span", {}, parts.slice(1).join(""), ui.msg);
      }
      ui.count.textContent = left;
      if (left) tickTimer = setTimeout(tick, 1000);
      else check(); // the server says "expired" (or that activity elsewhere saved us)
    })();
  }

  function extended(at, relay) {
    if (typeof at != "number" || (expiresAt != null && !(at > expiresAt))) return; // old news
    expiresAt = at;
    delete recent.expiring;
    if (shown == "expiring") hide();
    emit("extended", { type: "extended", expires_at: at });
    if (relay) post({ type: "extended", session: session, expires_at: at });
  }

  function signedIn(m) {
    if (!emit("signed_in", m) || (m.by && m.by.same_browser === true)) return;
    toast("signed_in", fmt(text.signedIn, { device: device(m.by) }), ["sign-out-others", text.notYou, notYou]);
    toastTimer = setTimeout(dismiss, 10000);
  }

  // Step-up: a request of this tab was answered 401 reauth_required (the route wants a
  // recent sign-in): "confirm it's you" opens reauthUrl?next=<this page>.
  function reauth(status, body) {
    if (status == 401 && body && body.error == "reauth_required" && emit("reauth_required", body))
      toast("reauth_required", text.reauth, ["confirm", text.confirm, function () {
        navigate(opts.reauthUrl || opts.signinUrl);
      }]);
  }

  // The toast (never modal, never steals focus): a message, an action, and Dismiss.
  function toast(kind, message, action) {
    var box = view().toast;
    reached = false;
    box.setAttribute("data-sw-state", kind);
    fill(box, message, [action, ["dismiss", text.dismiss, dismiss]]);
    box.hidden = false;
    clearTimeout(toastTimer);
  }

  // ---- actions ------------------------------------------------------------------------

  function useHere() {
    claim().then(null, noop);
  }

  function stay() {
    extend().then(null, noop);
  }

  function dismiss() {
    clearTimeout(toastTimer);
    if (ui && !ui.toast.hidden) {
      ui.toast.hidden = true;
      giveBack();
    }
  }

  function navigate(url, revokeOthers) {
    var u = new URL(url, doc.baseURI || loc.href);
    if (u.protocol != "http:" && u.protocol != "https:") return;
    u.searchParams.set("next", loc.pathname + loc.search + loc.hash);
    if (revokeOthers) u.searchParams.set("revoke_others", "1");
    loc.assign(u.href);
  }

  function signIn() {
    navigate(opts.signinUrl);
  }

  function notYou() {
    navigate(opts.reauthUrl || opts.signinUrl, true);
  }

  // ---- banner (Shadow DOM: page CSS cannot reach it) -----------------------------------

  function el(tag, attrs, content, parent) {
    var node = doc.createElement(tag);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (content != null) node.textContent = content;
    if (parent) parent.appendChild(node);
    return node;
  }

  // Fills the banner or the toast: the message, then buttons [data-sw-action, label, on
  // click], the first one primary. Returns the message's <p>.
  function fill(box, message, buttons) {
    box.textContent = "";
    var p = el("p", {}, message, box);
    for (var i = 0; i < buttons.length; i++) {
      var spec = buttons[i];
      el("button", { type: "button", class: i ? "" : "primary", "data-sw-action": spec[0] }, spec[1], box).addEventListener("click", spec[2]);
    }
    return p;
  }

  // Built at start(), so that the live regions exist before anything is said in them.
  function view() {
    if (!ui) {
      var host = doc.createElement("sessionwatch-banner");
      var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
      // Hidden until styled (its :host rule shows it); unstyled but shown if the sheet fails.
      host.hidden = true;
      styles.then(function (css) {
        try {
          // A constructed sheet is not an inline style: a strict CSP (style-src) allows it.
          var sheet = new G.CSSStyleSheet();
          sheet.replaceSync(css);
          root.adoptedStyleSheets = [sheet];
        } catch (e) {
          el("style", {}, css, root);
        }
        host.hidden = false;
      });
      var dock = el("div", { class: "dock" + (opts.placement == "top" ? " top" : "") }, null, root);
      ui = {
        host: host,
        dock: dock,
        toast: el("div", { class: "toast", role: "status", "data-sw-state": "signed_in", hidden: "" }, null, dock),
        // role=alert: a live region from the start, said once when it shows; focus stays
        // where the user is (a draft keeps its text) until the user asks (keydown below).
        // The banner sits nearest the page's edge, the toast beside it.
        box: el("div", { class: "box", role: "alert", part: "card", hidden: "" }, null, dock)
      };
      // The end of <body> (where checkers such as axe-core look); an overlay moves it out of
      // <body>, so that the inert body leaves the overlay usable.
      (doc.body || doc.documentElement).appendChild(host);
      doc.addEventListener("keydown", keydown, true);
      if (visual) {
        fit();
        visual.addEventListener("resize", fit);
        visual.addEventListener("scroll", fit);
      }
    }
    ui.host.setAttribute("lang", lang);
    return ui;
  }

  // A page wider than a phone's screen widens the layout viewport, which position:fixed
  // follows, past what the screen shows: the dock follows the visual viewport instead.
  function fit() {
    var v = visual;
    ui.dock.style.cssText = "left:" + v.offsetLeft + "px;top:" + v.offsetTop + "px;width:" + v.width + "px;height:" + v.height + "px";
  }

  function show(kind, message, buttons, modal) {
    var v = view(), box = v.box;
    clearTimeout(tickTimer);
    shown = kind;
    reached = false;
    box.setAttribute("data-sw-state", kind);
    box.setAttribute("data-sw-mode", modal ? "overlay" : "banner");
    v.dock.className = "dock" + (opts.placement == "top" ? " top" : "") + (modal ? " overlay" : "");
    if (modal) {
      box.setAttribute("role", "alertdialog");
      box.setAttribute("aria-modal", "true");
    }
    v.msg = fill(box, message, buttons);
    if (modal) doc.documentElement.appendChild(v.host);
    if (doc.body) doc.body.inert = !!modal;
    box.hidden = false;
  }

  function hide() {
    clearTimeout(tickTimer);
    if (!shown) return;
    shown = "";
    ui.box.hidden = true;
    ui.box.removeAttribute("data-sw-state");
    if (doc.body) doc.body.inert = false;
    giveBack();
  }

  // Focus that went into the banner returns where it came from when the banner goes.
  function giveBack() {
    if (doc.activeElement === ui.host && prevFocus && prevFocus.focus) prevFocus.focus();
  }

  // The user asks for the banner (or toast): the first Tab after it appeared goes to its
  // first button; later ones move on as usual.
  function keydown(event) {
    var box = shown ? ui.box : !ui.toast.hidden && ui.toast;
    if (!box || reached || event.key != "Tab" || event.shiftKey) return;
    reached = true;
    prevFocus = doc.activeElement;
    var first = box.querySelector("button");
    if (first) {
      event.preventDefault();
      first.focus();
    }
  }

  // A sign-out form is never disabled: a user must be able to sign out of a tab that
  // another tab superseded without the app remembering an attribute.
  function signsOut(node) {
    var form = node.closest("form"),
      to = node.getAttribute("formaction") || (form && form.getAttribute("action"));
    try {
      return !!to && new RegExp(opts.signOutPattern || "$^", "i").test(new URL(to, loc.href).pathname);
    } catch (e) {}
  }

  // Disables protected elements while this tab may not act (the server refuses anyway).
  // What carries or sits in data-sessionwatch-skip, and a sign-out form, is never disabled.
  function lock(on) {
    if (!on) {
      for (var i = 0; i < locked.length; i++) {
        locked[i].disabled = false;
        locked[i].removeAttribute("data-sessionwatch-disabled");
      }
      locked = [];
      return;
    }
    var list = [];
    try {
      list = doc.querySelectorAll(opts.protectedSelector);
    } catch (e) {}
    for (var j = 0; j < list.length; j++) {
      var node = list[j];
      if (!node.disabled && !(node.closest && (node.closest("[data-sessionwatch-skip]") || signsOut(node)))) {
        node.disabled = true;
        node.setAttribute("data-sessionwatch-disabled", "");
        locked.push(node);
      }
    }
  }

  // ---- attaching the token to the app's requests ----------------------------------------

  function install() {
    if (installed) return;
    installed = true;

    G.fetch = function (input, init) {
      var isRequest = G.Request && input instanceof G.Request;
      if (!attaching(isRequest ? input.url : input)) return nativeFetch.apply(G, arguments);
      function go() {
        var headers = new G.Headers((init && init.headers) || (isRequest ? input.headers : undefined));
        if (token && !headers.has(HEADER)) headers.set(HEADER, token);
        return nativeFetch.call(G, input, Object.assign({}, init, { headers: headers })).then(function (res) {
          if (res.status == 401 || res.status == 409) recheck();
          if (res.status == 401) res.clone().json().then(reauth.bind(null, 401), noop);
          return res;
        });
      }
      // While the first claim is in flight, wait for its token rather than send none.
      return !token && claiming ? claiming.then(go, go) : go();
    };

    var XHR = G.XMLHttpRequest && G.XMLHttpRequest.prototype;
    if (XHR && G.WeakMap) {
      var xhrs = new WeakMap(); // xhr -> {same: same-origin, set: the app set the header itself}
      var xOpen = XHR.open, xSet = XHR.setRequestHeader, xSend = XHR.send;
      XHR.open = function (method, url) {
        xhrs.set(this, { same: sameOrigin(url), set: false });
        return xOpen.apply(this, arguments);
      };
      XHR.setRequestHeader = function (name) {
        var meta = xhrs.get(this);
        if (meta && String(name).toLowerCase() == HEADER.toLowerCase()) meta.set = true;
        return xSet.apply(this, arguments);
      };
      XHR.send = function () {
        var meta = xhrs.get(this);
        if (meta && meta.same && !meta.set && token && running() && opts.attach) {
          xSet.call(this, HEADER, token);
          this.addEventListener("loadend", function () {
            if (this.status == 401 || this.status == 409) recheck();
            try {
              reauth(this.status, JSON.parse(this.responseText));
            } catch (e) {}
          });
        }
        return xSend.apply(this, arguments);
      };
    }

    // POST forms to this origin carry the token in a hidden field (never GET: URLs leak).
    doc.addEventListener(
      "submit",
      function (event) {
        var form = event.target, button = event.submitter;
        if (!form || form.tagName != "FORM") return;
        // getAttribute, not form.action: an <input name="action"> shadows the property
        var method = (button && button.getAttribute("formmethod")) || form.getAttribute("method") || "get";
        var action = (button && button.getAttribute("formaction")) || form.getAttribute("action") || loc.href;
        var field = form.querySelector("input[name=" + FIELD + "][data-sessionwatch]");
        var skip = form.hasAttribute("data-sessionwatch-skip") || (button && button.hasAttribute("data-sessionwatch-skip"));
        if (token && !skip && method.toLowerCase() == "post" && attaching(action)) {
          field = field || el("input", { type: "hidden", name: FIELD, "data-sessionwatch": "" }, null, form);
          field.value = token;
        } else if (field) field.parentNode.removeChild(field);
      },
      true
    );

    function wake(event) {
      if (!running() || over()) return;
      if (event.type == "visibilitychange" && doc.visibilityState != "visible") return;
      if (event.type == "pageshow" && !event.persisted) return;
      if (link == "wait") link = "";
      if (open()) hello(); // the answer (ready, superseded, …) re-verifies the token
      else if (link || !G.WebSocket) check();
      else if (!socket) {
        attempt = 0;
        connect();
      }
    }
    doc.addEventListener("visibilitychange", wake);
    G.addEventListener("focus", wake);
    G.addEventListener("online", wake);
    G.addEventListener("pageshow", wake);
    // Leave the back/forward cache usable; pageshow (persisted) reconnects.
    G.addEventListener("pagehide", function () {
      closeSocket();
      clearTimeout(retryTimer);
    });
  }

  // ---- public API ---------------------------------------------------------------------

  function settings(options) {
    var defaults = {
      prefix: "/_sessionwatch",
      autostart: true,
      attach: true,
      mode: "banner",
      placement: "bottom",
      signinUrl: "/login",
      reauthUrl: "",
      pollInterval: 30,
      protectedSelector:
        "[data-sessionwatch-protected], form[method=post i] button, form[method=post i] input[type=submit]",
      signOutPattern: "\\b(log|sign)[-_]?(out|off)/?$",
      lang: "",
      strings: {}
    };
    var data = (own && script.dataset) || {};
    try {
      var src = new URL(script.src);
      if (own && src.origin == loc.origin && /\/client\.js$/.test(src.pathname)) defaults.prefix = src.pathname.slice(0, -10);
    } catch (e) {}
    var result = {};
    for (var key in defaults) {
      var fallback = defaults[key];
      var value = options && options[key] !== undefined ? options[key] : data[key] !== undefined ? data[key] : fallback;
      if (typeof fallback == "boolean" && typeof value == "string") value = value != "false";
      if (typeof fallback == "number") value = +value > 0 ? +value : fallback;
      if (key == "strings" && typeof value == "string") {
        try {
          value = JSON.parse(value);
        } catch (e) {
          value = {};
        }
      }
      result[key] = value;
    }
    result.prefix = String(result.prefix).replace(/\/+$/, "");
    return result;
  }

  // The texts: English, or the bundled translation of the page's language (fetched once
  // from {prefix}/i18n/<lang>.json: only the chosen language is ever loaded); then the
  // app's own strings over either.
  function translate() {
    var wanted = LANGS.exec(opts.lang || doc.documentElement.lang || (G.navigator && G.navigator.language));
    lang = opts.lang || "en";
    text = Object.assign({}, STRINGS, opts.strings);
    if (wanted)
      asset("/i18n/" + (wanted = wanted[1].toLowerCase()) + ".json", 1).then(function (strings) {
        if (strings) {
          lang = opts.lang || wanted;
          text = Object.assign({}, STRINGS, strings, opts.strings);
          view();
        }
      });
  }

  // A second call re-configures: same prefix → new settings in place; another prefix (another
  // server) → stop, then start again.
  function start(options) {
    if (!supported) return setState(State.UNSUPPORTED);
    var next = settings(options);
    if (running() && next.prefix != opts.prefix) stop();
    var again = running();
    opts = next;
    translate();
    if (opts.attach) install();
    if (again) return;
    attempt = 0;
    link = "";
    if (G.BroadcastChannel) {
      channel = new G.BroadcastChannel("sessionwatch");
      channel.onmessage = broadcast;
    }
    setState(State.STARTING);
    connect(); // the claim first, then the banner's stylesheet
    styles = asset("/client.css");
    view();
  }

  function stop() {
    if (!running()) return;
    quiet();
    if (channel) channel.close();
    channel = null;
    hide();
    dismiss();
    lock(false);
    token = gen = session = expiresAt = null;
    lastSuperseded = {};
    setState(State.STOPPED);
  }

  var api = {
    version: VERSION,
    State: State,
    CloseCode: CloseCode,
    start: start,
    stop: stop,
    on: on,
    off: off,
    claim: claim,
    extend: extend,
    token: function () {
      return token;
    },
    state: function () {
      return state;
    }
  };

  G.SessionWatch = api;
  if (typeof module == "object" && module && module.exports) module.exports = api;
  if (own && settings().autostart) start();
})(typeof globalThis == "object" ? globalThis : self);
