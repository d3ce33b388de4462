/*! sessionwatch v0.1.0 | MIT */
/*
 * The browser client of sessionwatch: claims this tab, keeps a WebSocket to the server,
 * attaches the tab token to the app's own requests and tells the user, live, why this tab
 * stopped working. The server is the authority; this file only displays its verdicts.
 * Wire protocol: docs/protocol.md (version 1).
 *
 * Use: <script src="/_sessionwatch/client.js" defer></script> starts by itself and defines
 * exactly one global, SessionWatch. As an ES module: import SessionWatch from
 * "./sessionwatch.mjs" (no autostart there; call start()). In Node: require() gives the API.
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
 *   signinUrl         "/login"    "Sign in again" opens signinUrl?next=<this page>
 *   reauthUrl         signinUrl   "Not you?" opens reauthUrl?next=<this page>&revoke_others=1
 *   pollInterval      30          seconds between GET {prefix}/state without WebSocket
 *   protectedSelector "[data-sessionwatch-protected], form[method=post i] button,
 *                      form[method=post i] input[type=submit]"
 *                                 disabled while this tab may not act
 *   lang              ""          lang attribute of the banner, for translated strings
 *   strings           {}          overrides of the English texts below (data-strings: JSON)
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
  var CODES = { 4002: "expired", 4003: "revoked", 4004: "logged_out", 4005: "evicted" };
  var TERMINAL = /^(expired|revoked|logged_out|evicted)$/;

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
    logged_out: "You have been signed out.",
    expired: "Your session expired.",
    signIn: "Sign in again",
    expiring: "You will be signed out in {n} s.",
    stay: "Stay signed in",
    signedIn: "New sign-in: {device}.",
    notYou: "Not you?",
    dismiss: "Dismiss",
    device: "{browser} on {os}",
    unknownDevice: "another device",
    justNow: "just now",
    minutesAgo: "{n} min ago",
    hoursAgo: "{n} h ago",
    daysAgo: "{n} d ago"
  };

  var CSS =
    ":host{all:initial}[hidden]{display:none!important}" +
    ".box,.toast{position:fixed;z-index:var(--sessionwatch-z,2147483647);" +
    "font-family:var(--sessionwatch-font,system-ui,sans-serif);font-size:14px;line-height:1.4}" +
    ".box{top:0;left:0;right:0;display:flex;justify-content:center;padding:8px;pointer-events:none}" +
    ".overlay{bottom:0;align-items:center;pointer-events:auto;" +
    "background:var(--sessionwatch-backdrop,rgba(0,0,0,.55))}" +
    ".card,.toast{display:flex;flex-wrap:wrap;align-items:center;gap:8px 12px;max-width:40em;" +
    "padding:10px 14px;pointer-events:auto;background:var(--sessionwatch-bg,#1f2328);" +
    "color:var(--sessionwatch-fg,#fff);border-radius:var(--sessionwatch-radius,8px);" +
    "box-shadow:0 4px 16px rgba(0,0,0,.3)}" +
    ".toast{right:12px;bottom:12px}p{margin:0;flex:1 1 14em}" +
    "button{font:inherit;color:inherit;background:none;cursor:pointer;padding:4px 12px;" +
    "border:1px solid var(--sessionwatch-accent,#4c8dff);border-radius:var(--sessionwatch-radius,8px)}" +
    ".primary{background:var(--sessionwatch-accent,#4c8dff);color:var(--sessionwatch-accent-fg,#fff)}" +
    "button:focus-visible{outline:2px solid var(--sessionwatch-accent,#4c8dff);outline-offset:2px}";

  var doc = G.document;
  var loc = G.location;
  var script = doc && doc.currentScript;
  var supported = !!(doc && loc && G.fetch && G.Promise && G.URL && G.Headers);
  var nativeFetch = G.fetch;
  var handlers = {};

  var opts = {};
  var text = STRINGS;
  var running = false;
  var installed = false;
  var state = "stopped";
  var token = null; // "{gen}.{mac}", see protocol §1
  var gen = null; // the generation of our token
  var session = null; // the public session id
  var expiresAt = null;
  var claiming = null; // the POST /claim in flight
  var socket = null;
  var channel = null; // BroadcastChannel
  var attempt = 0; // reconnects since the last "ready"
  var pollOnly = false;
  var waitFocus = false; // close 4011: no retries until the page regains focus
  var lastSuperseded = {};
  var lastCheck = 0;
  var pinged = false; // a ping is out, unanswered
  var retryTimer = 0, beatTimer = 0, pollTimer = 0, tickTimer = 0, toastTimer = 0;
  var ui = null; // {host, box, msg, actions, toast, count}
  var shown = ""; // the state the banner shows, "" when hidden
  var locked = [];
  var prevFocus = null;

  function noop() {}

  function over() {
    return TERMINAL.test(state);
  }

  function fmt(str, vars) {
    return String(str).replace(/\{(\w+)\}/g, function (all, key) {
      return vars[key] != null ? vars[key] : all;
    });
  }

  function device(by) {
    by = by || {};
    var browser = by.browser, os = by.os;
    return browser && os ? fmt(text.device, { browser: browser, os: os }) : browser || os || text.unknownDevice;
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
    return running && opts.attach && sameOrigin(url);
  }

  // ---- events -------------------------------------------------------------------------

  // Dispatches "sessionwatch:<type>" on document, then calls on() listeners with
  // (detail, event). Returns false when someone called preventDefault(): no built-in UI.
  function emit(type, detail) {
    var event = null;
    try {
      event = new G.CustomEvent("sessionwatch:" + type, { detail: detail, cancelable: true });
      doc.dispatchEvent(event);
    } catch (e) {}
    var list = (handlers[type] || []).slice();
    for (var i = 0; i < list.length; i++) {
      try {
        list[i](detail, event);
      } catch (e) {
        report(e);
      }
    }
    return !(event && event.defaultPrevented);
  }

  function report(error) {
    setTimeout(function () {
      throw error;
    });
  }

  function on(type, fn) {
    (handlers[type] = handlers[type] || []).push(fn);
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
    if (doc) doc.documentElement.setAttribute("data-sessionwatch-state", next);
    emit("state", { state: next, previous: previous });
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

  function claim() {
    if (!running || over()) return Promise.reject(new Error("sessionwatch: not running"));
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
          if (!running || over()) return body;
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
    if (!running || !token) return Promise.reject(new Error("sessionwatch: not running"));
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
    if (!running || over() || !token) return Promise.resolve();
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
    if (!running || over() || waitFocus) return;
    if (!token) {
      claim().then(null, function (error) {
        var status = error.status;
        if (status >= 400 && status < 500 && status != 408 && status != 429) {
          if (G.console) console.warn(error.message); // misconfigured (origin, prefix): give up
          stop();
        } else retry();
      });
    } else if (pollOnly || !G.WebSocket) {
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
    if (!running || over()) return;
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
    if (!running || over()) return;
    if (CODES[code]) end(CODES[code], { type: CODES[code], code: code });
    else if (code == 4006) {
      pollOnly = true; // the server speaks another protocol version: HTTP still works
      connect();
    } else if (code == 4011) waitFocus = true;
    else if (code == 4007) {
      token = null;
      retry(true);
    } else if (code == 4013) retry(true);
    else if (!opened) {
      // The handshake failed; a refusal (401) is invisible to scripts, so ask GET /state.
      check().then(function () {
        retry();
      });
    } else retry();
  }

  function receive(m) {
    if (!running || over()) return;
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
    if (!running || over() || !m || !session || m.session !== session) return;
    if (m.type == "claimed" && m.exclusive !== false && typeof m.gen == "number" && m.gen > gen && state == "active") {
      supersede({ type: "superseded", gen: m.gen, by: null, via: "broadcast" });
      check();
    } else if (m.type == "extended") extended(m.expires_at, false);
  }

  // ---- states -------------------------------------------------------------------------

  function activate() {
    setState("active");
    if (shown == "superseded") hide();
    lock(false);
  }

  // `force`: the verdict of an HTTP answer, which needs no generation check.
  function supersede(m, force) {
    if (over() || !token) return;
    if (!force && typeof m.gen == "number" && !(m.gen > gen)) return; // our own or an older claim
    if (state == "superseded" && (!m.by || (lastSuperseded.by && m.gen === lastSuperseded.gen))) return;
    lastSuperseded = m;
    setState("superseded");
    if (!emit("superseded", m)) return hide();
    var by = m.by;
    show(
      "superseded",
      by && by.same_browser === false ? fmt(text.supersededBy, { device: device(by), when: ago(by.at) }) : text.superseded,
      [
        ["use-here", text.useHere, useHere],
        ["sign-out-others", text.signOutOthers, notYou]
      ]
    );
    lock(true);
  }

  function end(type, m) {
    if (over()) return;
    setState(type);
    closeSocket();
    clearTimeout(retryTimer);
    clearInterval(pollTimer);
    pollTimer = 0;
    if (!emit(type, m)) {
      hide();
      return lock(false);
    }
    var message = type == "revoked" ? text["revoked_" + m.reason] : fmt(text[type], { device: device(m.by) });
    show(type, typeof message == "string" ? message : text.revoked, [["sign-in", text.signIn, signIn]], opts.mode == "overlay");
    lock(true);
  }

  function expiring(m) {
    if (m.expires_at) expiresAt = m.expires_at;
    if (!emit("expiring", m) || state != "active") return;
    var seconds = typeof m["in"] == "number" ? m["in"] : (m.expires_at - Date.now()) / 1000;
    var deadline = Date.now() + seconds * 1000;
    var parts = text.expiring.split("{n}");
    show("expiring", parts[0], [["stay", text.stay, stay]]);
    // role=timer is not announced on every tick; the alert is, once
    ui.count = el("span", { role: "timer" }, "", ui.msg);
    el("span", {}, parts.slice(1).join("{n}"), ui.msg);
    (function tick() {
      var left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
      ui.count.textContent = left;
      if (left) tickTimer = setTimeout(tick, 1000);
      else check(); // the server says "expired" (or that activity elsewhere saved us)
    })();
  }

  function extended(at, relay) {
    if (typeof at != "number" || (expiresAt != null && !(at > expiresAt))) return; // old news
    expiresAt = at;
    if (shown == "expiring") hide();
    emit("extended", { type: "extended", expires_at: at });
    if (relay) post({ type: "extended", session: session, expires_at: at });
  }

  function signedIn(m) {
    if (!emit("signed_in", m) || (m.by && m.by.same_browser === true)) return;
    var box = view().toast;
    box.textContent = "";
    el("p", {}, fmt(text.signedIn, { device: device(m.by) }), box);
    el("button", { type: "button", "data-sw-action": "sign-out-others" }, text.notYou, box).addEventListener("click", notYou);
    el("button", { type: "button", "data-sw-action": "dismiss", "aria-label": text.dismiss }, "\u00d7", box).addEventListener("click", dismiss);
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(dismiss, 10000);
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
    if (ui) ui.toast.hidden = true;
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

  function view() {
    if (!ui) {
      var host = doc.createElement("sessionwatch-banner");
      var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
      try {
        // A constructed sheet is not an inline style: a strict CSP (style-src) allows it.
        var sheet = new G.CSSStyleSheet();
        sheet.replaceSync(CSS);
        root.adoptedStyleSheets = [sheet];
      } catch (e) {
        el("style", {}, CSS, root);
      }
      var box = el("div", { class: "box", role: "alert", hidden: "" }, null, root);
      var card = el("div", { class: "card", part: "card" }, null, box);
      ui = {
        host: host,
        box: box,
        msg: el("p", {}, null, card),
        actions: el("div", {}, null, card),
        toast: el("div", { class: "toast", role: "status", "data-sw-state": "signed_in", hidden: "" }, null, root)
      };
      if (opts.lang) {
        box.setAttribute("lang", opts.lang);
        ui.toast.setAttribute("lang", opts.lang);
      }
      // Outside <body>, so that an inert body leaves the overlay usable.
      doc.documentElement.appendChild(host);
    }
    return ui;
  }

  function show(kind, message, buttons, modal) {
    var v = view(), box = v.box;
    clearTimeout(tickTimer);
    if (!shown) prevFocus = doc.activeElement;
    shown = kind;
    box.setAttribute("data-sw-state", kind);
    box.setAttribute("data-sw-mode", modal ? "overlay" : "banner");
    box.className = modal ? "box overlay" : "box";
    v.msg.textContent = message;
    v.actions.textContent = "";
    for (var i = 0; i < buttons.length; i++) {
      var b = buttons[i];
      el("button", { type: "button", class: i ? "" : "primary", "data-sw-action": b[0] }, b[1], v.actions).addEventListener("click", b[2]);
    }
    if (doc.body) doc.body.inert = !!modal;
    box.hidden = false;
    v.actions.firstChild.focus();
  }

  function hide() {
    clearTimeout(tickTimer);
    if (!shown) return;
    shown = "";
    ui.box.hidden = true;
    ui.box.removeAttribute("data-sw-state");
    if (doc.body) doc.body.inert = false;
    if (doc.activeElement === ui.host && prevFocus && prevFocus.focus) prevFocus.focus();
  }

  // Disables protected elements while this tab may not act (the server refuses anyway).
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
      if (!list[j].disabled) {
        list[j].disabled = true;
        list[j].setAttribute("data-sessionwatch-disabled", "");
        locked.push(list[j]);
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
        if (meta && meta.same && !meta.set && token && running && opts.attach) {
          xSet.call(this, HEADER, token);
          this.addEventListener("loadend", function () {
            if (this.status == 401 || this.status == 409) recheck();
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
      if (!running || over()) return;
      if (event.type == "visibilitychange" && doc.visibilityState != "visible") return;
      if (event.type == "pageshow" && !event.persisted) return;
      waitFocus = false;
      if (open()) hello(); // the answer (ready, superseded, …) re-verifies the token
      else if (pollOnly || !G.WebSocket) check();
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
      signinUrl: "/login",
      reauthUrl: "",
      pollInterval: 30,
      protectedSelector:
        "[data-sessionwatch-protected], form[method=post i] button, form[method=post i] input[type=submit]",
      lang: "",
      strings: {}
    };
    var data = (script && script.dataset) || {};
    try {
      var src = new URL(script.src);
      if (src.origin == loc.origin && /\/client\.js$/.test(src.pathname)) defaults.prefix = src.pathname.slice(0, -10);
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

  function start(options) {
    if (running) return;
    if (!supported) return setState("unsupported");
    opts = settings(options);
    text = Object.assign({}, STRINGS, opts.strings);
    running = true;
    attempt = 0;
    pollOnly = waitFocus = false;
    if (opts.attach) install();
    if (G.BroadcastChannel) {
      channel = new G.BroadcastChannel("sessionwatch");
      channel.onmessage = broadcast;
    }
    setState("starting");
    connect();
  }

  function stop() {
    if (!running) return;
    running = false;
    closeSocket();
    clearTimeout(retryTimer);
    clearInterval(pollTimer);
    pollTimer = 0;
    if (channel) channel.close();
    channel = null;
    hide();
    dismiss();
    lock(false);
    token = gen = session = expiresAt = null;
    lastSuperseded = {};
    setState("stopped");
  }

  var api = {
    version: VERSION,
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
  if (script && settings().autostart) start();
})(typeof globalThis == "object" ? globalThis : self);
