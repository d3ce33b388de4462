"use strict";
// A small fake browser for the unit tests: DOM (with shadow roots and a tiny selector
// engine), location, fetch + a fake sessionwatch server, XMLHttpRequest, WebSocket,
// BroadcastChannel and a manual clock. sessionwatch.js runs in its own vm context per
// fake tab, exactly as a classic <script> would: it sees only these globals.
//
// Run directly (node --test runs every file under test/), it tests its own selector engine.

const vm = require("node:vm");
const fs = require("node:fs");
const path = require("node:path");

const SOURCE_PATH = path.join(__dirname, "..", "sessionwatch.js");
const SOURCE = fs.readFileSync(SOURCE_PATH, "utf8");
const CSS = fs.readFileSync(path.join(__dirname, "..", "sessionwatch.css"), "utf8");
const translation = (lang) => ({ status: 200, body: JSON.parse(fs.readFileSync(path.join(__dirname, "..", "i18n", lang + ".json"), "utf8")) });
const ORIGIN = "https://app.example.com";
const PAGE = ORIGIN + "/app/page?x=1#h";
const HEADER = "x-sessionwatch-tab";

/** Lets pending promise callbacks, setImmediate and BroadcastChannel deliveries run. */
async function flush() {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

// ---- clock ------------------------------------------------------------------------------

class Clock {
  constructor(now = 1_700_000_000_000) {
    this.now = now;
    this.timers = new Map();
    this.nextId = 1;
  }

  add(fn, delay, repeat) {
    const id = this.nextId++;
    delay = Math.max(0, Number(delay) || 0);
    this.timers.set(id, { id, fn, delay, at: this.now + delay, repeat });
    return id;
  }

  setTimeout(fn, delay) {
    return this.add(fn, delay, false);
  }

  setInterval(fn, delay) {
    return this.add(fn, delay, true);
  }

  clear(id) {
    this.timers.delete(id);
  }

  /** Pending timers, soonest first: [{id, delay, at, repeat}]. */
  pending() {
    return [...this.timers.values()].sort((a, b) => a.at - b.at || a.id - b.id);
  }

  /** Moves time forward by `ms`, running every timer that falls due, in order. */
  async advance(ms) {
    const end = this.now + ms;
    await flush();
    for (;;) {
      const next = this.pending()[0];
      if (!next || next.at > end) break;
      this.now = next.at;
      if (next.repeat) next.at += Math.max(1, next.delay);
      else this.timers.delete(next.id);
      next.fn();
      await flush();
    }
    this.now = end;
    await flush();
  }
}

// ---- events -----------------------------------------------------------------------------

class FakeEvent {
  constructor(type, init = {}) {
    this.type = type;
    this.cancelable = !!init.cancelable;
    this.defaultPrevented = false;
    this.target = null;
    Object.assign(this, init);
  }

  preventDefault() {
    if (this.cancelable) this.defaultPrevented = true;
  }
}

class FakeCustomEvent extends FakeEvent {
  constructor(type, init = {}) {
    super(type, init);
    this.detail = init.detail === undefined ? null : init.detail;
  }
}

class Target {
  constructor() {
    this.listeners = [];
  }

  addEventListener(type, fn, options) {
    const capture = options === true || !!(options && options.capture);
    this.listeners.push({ type, fn, capture });
  }

  removeEventListener(type, fn) {
    this.listeners = this.listeners.filter((l) => l.type !== type || l.fn !== fn);
  }

  dispatchEvent(event) {
    if (!event.target) event.target = this;
    for (const l of this.listeners.filter((l) => l.type === event.type)) {
      l.fn.call(this, event);
    }
    return !event.defaultPrevented;
  }
}

// ---- DOM --------------------------------------------------------------------------------

class Text {
  constructor(data) {
    this.nodeType = 3;
    this.data = String(data);
    this.parentNode = null;
  }

  get textContent() {
    return this.data;
  }
}

function reflect(cls, name) {
  Object.defineProperty(cls.prototype, name, {
    get() {
      return this.hasAttribute(name);
    },
    set(on) {
      if (on) this.setAttribute(name, "");
      else this.removeAttribute(name);
    },
  });
}

class Element extends Target {
  constructor(document, tagName) {
    super();
    this.nodeType = 1;
    this.ownerDocument = document;
    this.localName = String(tagName).toLowerCase();
    this.tagName = this.localName.toUpperCase();
    this.attrs = new Map();
    this.childNodes = [];
    this.parentNode = null;
    this.shadowRoot = null;
    this.value = "";
    this.style = { cssText: "" };
    const self = this;
    this.dataset = new Proxy(
      {},
      {
        get(_, key) {
          if (typeof key !== "string") return undefined;
          const name = "data-" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
          return self.attrs.has(name) ? self.attrs.get(name) : undefined;
        },
        set(_, key, value) {
          self.setAttribute("data-" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()), value);
          return true;
        },
      }
    );
  }

  setAttribute(name, value) {
    this.attrs.set(String(name).toLowerCase(), String(value));
  }

  getAttribute(name) {
    name = String(name).toLowerCase();
    return this.attrs.has(name) ? this.attrs.get(name) : null;
  }

  hasAttribute(name) {
    return this.attrs.has(String(name).toLowerCase());
  }

  removeAttribute(name) {
    this.attrs.delete(String(name).toLowerCase());
  }

  get className() {
    return this.getAttribute("class") || "";
  }

  set className(value) {
    this.setAttribute("class", value);
  }

  get children() {
    return this.childNodes.filter((n) => n.nodeType === 1);
  }

  get firstChild() {
    return this.childNodes[0] || null;
  }

  get lastChild() {
    return this.childNodes[this.childNodes.length - 1] || null;
  }

  appendChild(child) {
    if (child.parentNode) child.parentNode.removeChild(child);
    this.childNodes.push(child);
    child.parentNode = this;
    return child;
  }

  removeChild(child) {
    const i = this.childNodes.indexOf(child);
    if (i < 0) throw new Error("NotFoundError: not a child");
    this.childNodes.splice(i, 1);
    child.parentNode = null;
    return child;
  }

  remove() {
    if (this.parentNode) this.parentNode.removeChild(this);
  }

  get textContent() {
    return this.childNodes.map((n) => n.textContent).join("");
  }

  set textContent(value) {
    for (const n of this.childNodes) n.parentNode = null;
    this.childNodes = [];
    if (value != null && value !== "") this.appendChild(new Text(value));
  }

  // Any HTML parsing by the client is a bug: these throw so that a test fails loudly.
  get innerHTML() {
    return this.textContent;
  }

  set innerHTML(_) {
    throw new Error("innerHTML must not be used by sessionwatch");
  }

  set outerHTML(_) {
    throw new Error("outerHTML must not be used by sessionwatch");
  }

  insertAdjacentHTML() {
    throw new Error("insertAdjacentHTML must not be used by sessionwatch");
  }

  attachShadow(init) {
    if (this.shadowRoot || this._shadow) throw new Error("NotSupportedError: already has a shadow root");
    const root = new ShadowRoot(this.ownerDocument, this, init.mode);
    this._shadow = root;
    if (init.mode === "open") this.shadowRoot = root;
    return root;
  }

  focus() {
    this.ownerDocument.focusElement(this);
  }

  click() {
    this.dispatchEvent(new FakeEvent("click", { cancelable: true }));
  }

  /** Every descendant element, document order (shadow trees are not entered). */
  descendants() {
    const out = [];
    const walk = (node) => {
      for (const child of node.childNodes) {
        if (child.nodeType !== 1) continue;
        out.push(child);
        walk(child);
      }
    };
    walk(this);
    return out;
  }

  matches(selector) {
    return matchSelector(this, selector);
  }

  querySelectorAll(selector) {
    const list = parseSelectorList(selector);
    return this.descendants().filter((el) => list.some((complex) => matchComplex(el, complex)));
  }

  querySelector(selector) {
    return this.querySelectorAll(selector)[0] || null;
  }

  closest(selector) {
    for (let n = this; n && n.nodeType === 1; n = n.parentNode) if (n.matches(selector)) return n;
    return null;
  }

  contains(node) {
    for (let n = node; n; n = n.parentNode) if (n === this) return true;
    return false;
  }
}

reflect(Element, "hidden");
reflect(Element, "disabled");
reflect(Element, "inert");
Object.defineProperty(Element.prototype, "lang", {
  get() {
    return this.getAttribute("lang") || "";
  },
});

class ShadowRoot extends Element {
  constructor(document, host, mode) {
    super(document, "#shadow-root");
    this.host = host;
    this.mode = mode;
    this.activeElement = null;
  }
}

class Document extends Target {
  constructor(url) {
    super();
    this.nodeType = 9;
    this.baseURI = url;
    this.visibilityState = "visible";
    this.currentScript = null;
    this.documentElement = new Element(this, "html");
    this.head = this.documentElement.appendChild(new Element(this, "head"));
    this.body = this.documentElement.appendChild(new Element(this, "body"));
    this.activeElement = this.body;
    this.events = []; // every event dispatched on the document
  }

  createElement(tag) {
    return new Element(this, tag);
  }

  createTextNode(data) {
    return new Text(data);
  }

  querySelectorAll(selector) {
    const list = parseSelectorList(selector);
    return [this.documentElement, ...this.documentElement.descendants()].filter((el) =>
      list.some((complex) => matchComplex(el, complex))
    );
  }

  querySelector(selector) {
    return this.querySelectorAll(selector)[0] || null;
  }

  dispatchEvent(event) {
    this.events.push(event);
    return super.dispatchEvent(event);
  }

  /** Focus with shadow retargeting: activeElement is the host of a focused shadow node. */
  focusElement(el) {
    let node = el;
    while (node.parentNode) node = node.parentNode;
    if (node instanceof ShadowRoot) {
      node.activeElement = el;
      this.activeElement = node.host;
    } else this.activeElement = el;
  }
}

// ---- selectors: lists, descendant combinator, tag, #id, .class, [attr], [attr=v i] -------

function splitTop(text, separator) {
  const parts = [];
  let depth = 0, quote = "", current = "";
  for (const ch of text) {
    if (quote) {
      if (ch === quote) quote = "";
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === "[") depth++;
    else if (ch === "]") depth--;
    else if (depth === 0 && separator.test(ch)) {
      parts.push(current);
      current = "";
      continue;
    }
    current += ch;
  }
  parts.push(current);
  return parts.map((p) => p.trim()).filter(Boolean);
}

function parseCompound(text) {
  const compound = { tag: null, tests: [] };
  let rest = text;
  let m = /^([a-zA-Z][\w-]*|\*)/.exec(rest);
  if (m) {
    if (m[1] !== "*") compound.tag = m[1].toLowerCase();
    rest = rest.slice(m[0].length);
  }
  while (rest) {
    if ((m = /^\[\s*([\w-]+)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s\]"']+))\s*([iI])?\s*)?\]/.exec(rest))) {
      const value = m[2] ?? m[3] ?? m[4];
      compound.tests.push({ attr: m[1].toLowerCase(), value, insensitive: !!m[5] });
    } else if ((m = /^\.([\w-]+)/.exec(rest))) {
      compound.tests.push({ cls: m[1] });
    } else if ((m = /^#([\w-]+)/.exec(rest))) {
      compound.tests.push({ attr: "id", value: m[1] });
    } else {
      throw new SyntaxError("unsupported selector: " + text);
    }
    rest = rest.slice(m[0].length);
  }
  return compound;
}

function parseSelectorList(selector) {
  const list = splitTop(String(selector), /,/).map((complex) => splitTop(complex, /\s/).map(parseCompound));
  if (!list.length) throw new SyntaxError("empty selector");
  return list;
}

function matchCompound(el, compound) {
  if (!el || el.nodeType !== 1) return false;
  if (compound.tag && el.localName !== compound.tag) return false;
  return compound.tests.every((t) => {
    if (t.cls) return el.className.split(/\s+/).includes(t.cls);
    const actual = el.getAttribute(t.attr);
    if (actual === null) return false;
    if (t.value === undefined) return true;
    return t.insensitive ? actual.toLowerCase() === t.value.toLowerCase() : actual === t.value;
  });
}

function matchComplex(el, compounds) {
  if (!matchCompound(el, compounds[compounds.length - 1])) return false;
  let node = el.parentNode;
  for (let i = compounds.length - 2; i >= 0; i--) {
    while (node && !matchCompound(node, compounds[i])) node = node.parentNode;
    if (!node) return false;
    node = node.parentNode;
  }
  return true;
}

function matchSelector(el, selector) {
  return parseSelectorList(selector).some((complex) => matchComplex(el, complex));
}

// ---- the fake sessionwatch server (HTTP side) ---------------------------------------------

class Server {
  constructor(clock) {
    this.clock = clock;
    this.gen = 0;
    this.session = "S1";
    this.user = "u1";
    this.expiresAt = clock.now + 30 * 60_000;
    this.requests = [];
    // "METHOD /path" -> (request) => {status, body} | Promise | "network-error"
    this.routes = {
      "POST /_sessionwatch/claim": () => this.claim(),
      "GET /_sessionwatch/state": (req) => ({
        status: 200,
        body: { session: this.session, user: this.user, expires_at: this.expiresAt, gen: this.gen, tab: this.tabState(req.tab) },
      }),
      // The client's static files, as the Quart blueprint serves them.
      "GET /_sessionwatch/client.css": () => ({ status: 200, text: CSS }),
      "GET /_sessionwatch/i18n/de.json": () => translation("de"),
      "GET /_sessionwatch/i18n/es.json": () => translation("es"),
      "GET /_sessionwatch/i18n/fr.json": () => translation("fr"),
      "GET /_sessionwatch/i18n/ja.json": () => translation("ja"),
      "POST /_sessionwatch/extend": () => {
        this.expiresAt = this.clock.now + 30 * 60_000;
        return { status: 200, body: { expires_at: this.expiresAt } };
      },
    };
  }

  /** Serves the API under another prefix too. */
  mount(prefix) {
    for (const key of Object.keys(this.routes)) {
      const [method, route] = key.split(" ");
      if (route.startsWith("/_sessionwatch/")) this.routes[`${method} ${prefix}${route.slice(14)}`] = this.routes[key];
    }
    return this;
  }

  claim() {
    this.gen += 1;
    return {
      status: 200,
      body: { tab: this.token(this.gen), gen: this.gen, expires_at: this.expiresAt, session: this.session, user: this.user },
    };
  }

  token(gen) {
    return `${gen}.${("mac" + gen).padEnd(22, "x")}`;
  }

  tabState(tab) {
    if (!tab) return "missing";
    const gen = parseInt(tab, 10);
    if (tab !== this.token(gen)) return "invalid";
    return gen === this.gen ? "active" : "superseded";
  }

  /** Requests whose path is `path` (and method, when given). */
  calls(path, method) {
    return this.requests.filter((r) => r.path === path && (!method || r.method === method));
  }

  async handle(request) {
    this.requests.push(request);
    const route = this.routes[`${request.method} ${request.path}`];
    const answer = route ? await route(request) : { status: 404, body: { error: "not_found" } };
    if (answer === "network-error") throw new TypeError("Failed to fetch");
    return answer;
  }
}

// ---- one fake browser tab ------------------------------------------------------------------

/**
 * Creates a tab and runs sessionwatch.js in it.
 *
 * options: url (page URL), script ({src, data} for document.currentScript, or null as in
 * an ES module), server (share one between tabs), bus (share BroadcastChannels between
 * tabs), clock, without (["WebSocket", "BroadcastChannel", "fetch", ...] to leave out),
 * navigator ({language}), lang (<html lang>), source (another script to run, e.g. a bundle),
 * visualViewport ({offsetLeft, offsetTop, width, height}: window.visualViewport, an event
 * target; the test moves it with tab.moveViewport).
 */
function createTab(options = {}) {
  const clock = options.clock || new Clock();
  const server = options.server || new Server(clock);
  const bus = options.bus || new Set();
  const without = new Set(options.without || []);
  const pageUrl = new URL(options.url || PAGE);
  const document = new Document(pageUrl.href);
  const assigned = [];
  const sockets = [];
  const xhrs = [];
  let random = 0.5;

  const location = {
    get href() {
      return pageUrl.href;
    },
    get origin() {
      return pageUrl.origin;
    },
    get protocol() {
      return pageUrl.protocol;
    },
    get host() {
      return pageUrl.host;
    },
    get hostname() {
      return pageUrl.hostname;
    },
    get port() {
      return pageUrl.port;
    },
    get pathname() {
      return pageUrl.pathname;
    },
    get search() {
      return pageUrl.search;
    },
    get hash() {
      return pageUrl.hash;
    },
    assign(url) {
      assigned.push(String(url));
    },
  };

  async function fetch(input, init = {}) {
    const isRequest = input instanceof Request;
    const url = new URL(isRequest ? input.url : String(input), pageUrl.href);
    const headers = new Headers(init.headers || (isRequest ? input.headers : undefined));
    const request = {
      url: url.href,
      path: url.pathname,
      method: (init.method || (isRequest ? input.method : "GET")).toUpperCase(),
      headers,
      tab: headers.get(HEADER),
      body: init.body,
      init,
    };
    const answer = await server.handle(request);
    if (answer.text !== undefined) return new Response(answer.text, { status: answer.status, headers: { "content-type": "text/css" } });
    return new Response(answer.body === undefined ? null : JSON.stringify(answer.body), {
      status: answer.status,
      headers: { "content-type": "application/json" },
    });
  }

  class FakeXMLHttpRequest {
    constructor() {
      this.listeners = [];
      this.headers = {};
      this.status = 0;
    }

    open(method, url) {
      this.method = method;
      this.url = url;
    }

    setRequestHeader(name, value) {
      const key = String(name).toLowerCase();
      this.headers[key] = key in this.headers ? this.headers[key] + ", " + value : String(value);
    }

    addEventListener(type, fn) {
      this.listeners.push({ type, fn });
    }

    send(body) {
      this.body = body;
      xhrs.push(this);
    }

    /** Test side: the response arrives. */
    respond(status) {
      this.status = status;
      for (const l of this.listeners) if (l.type === "loadend") l.fn.call(this, new FakeEvent("loadend"));
    }
  }

  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error("InvalidStateError: socket not open");
      this.sent.push(JSON.parse(data));
    }

    close(code) {
      if (this.readyState === 3) return;
      this.closedWith = code === undefined ? 1005 : code;
      this.readyState = 3;
      // As in browsers, close() still fires onclose later (unless the handler was removed).
      setImmediate(() => this.onclose && this.onclose(new FakeEvent("close", { code: this.closedWith })));
    }

    // -- the server's side
    accept() {
      this.readyState = 1;
      if (this.onopen) this.onopen(new FakeEvent("open"));
    }

    message(data) {
      if (this.onmessage) this.onmessage(new FakeEvent("message", { data: typeof data === "string" ? data : JSON.stringify(data) }));
    }

    serverClose(code) {
      this.readyState = 3;
      if (this.onclose) this.onclose(new FakeEvent("close", { code }));
    }
  }
  FakeWebSocket.CONNECTING = 0;
  FakeWebSocket.OPEN = 1;
  FakeWebSocket.CLOSING = 2;
  FakeWebSocket.CLOSED = 3;

  class FakeBroadcastChannel {
    constructor(name) {
      this.name = name;
      this.onmessage = null;
      this.closed = false;
      this.posted = [];
      bus.add(this);
    }

    postMessage(data) {
      if (this.closed) throw new Error("InvalidStateError: channel closed");
      this.posted.push(data);
      const copy = structuredClone(data);
      for (const other of bus) {
        if (other !== this && other.name === this.name && !other.closed) {
          setImmediate(() => other.onmessage && !other.closed && other.onmessage(new FakeEvent("message", { data: copy })));
        }
      }
    }

    close() {
      this.closed = true;
      bus.delete(this);
    }
  }

  const windowTarget = new Target();
  const math = Object.create(Math, { random: { value: () => random } });
  class FakeDate extends Date {
    constructor(...args) {
      if (args.length) super(...args);
      else super(clock.now);
    }

    static now() {
      return clock.now;
    }
  }

  const window = {
    document,
    location,
    console,
    URL,
    Headers,
    Request,
    Response,
    WeakMap,
    fetch,
    XMLHttpRequest: FakeXMLHttpRequest,
    WebSocket: FakeWebSocket,
    BroadcastChannel: FakeBroadcastChannel,
    CustomEvent: FakeCustomEvent,
    Event: FakeEvent,
    Date: FakeDate,
    Math: math,
    setTimeout: (fn, delay) => clock.setTimeout(fn, delay),
    clearTimeout: (id) => clock.clear(id),
    setInterval: (fn, delay) => clock.setInterval(fn, delay),
    clearInterval: (id) => clock.clear(id),
    addEventListener: (...args) => windowTarget.addEventListener(...args),
    removeEventListener: (...args) => windowTarget.removeEventListener(...args),
    dispatchEvent: (event) => windowTarget.dispatchEvent(event),
  };
  if (options.navigator) window.navigator = options.navigator;
  if (options.visualViewport) window.visualViewport = Object.assign(new Target(), options.visualViewport);
  if (options.lang) document.documentElement.setAttribute("lang", options.lang);
  window.window = window;
  window.self = window;
  for (const name of without) delete window[name];

  if (options.script !== null) {
    const script = document.createElement("script");
    const spec = options.script || {};
    script.src = spec.src || ORIGIN + "/_sessionwatch/client.js";
    for (const [key, value] of Object.entries(spec.data || {})) script.dataset[key] = value;
    document.head.appendChild(script);
    document.currentScript = script;
  }

  if (options.beforeLoad) options.beforeLoad({ window, document });
  vm.createContext(window);
  vm.runInContext(options.source || SOURCE, window, { filename: options.source ? "bundle.js" : SOURCE_PATH });
  document.currentScript = null;

  const tab = {
    window,
    document,
    location,
    clock,
    server,
    bus,
    sockets,
    xhrs,
    assigned,
    api: window.SessionWatch,
    flush,
    setRandom(value) {
      random = value;
    },
    /** The newest WebSocket. */
    get socket() {
      return sockets[sockets.length - 1];
    },
    /** sessionwatch:* events dispatched on document, optionally of one type. */
    events(type) {
      return document.events.filter((e) => e.type.startsWith("sessionwatch:") && (!type || e.type === "sessionwatch:" + type));
    },
    eventTypes() {
      return this.events().map((e) => e.type.slice("sessionwatch:".length));
    },
    /** The banner host and its parts (null when never rendered). */
    get host() {
      return [...document.body.children, ...document.documentElement.children].find((el) => el.localName === "sessionwatch-banner") || null;
    },
    get shadow() {
      return this.host && this.host.shadowRoot;
    },
    get box() {
      return this.shadow && this.shadow.querySelector(".box");
    },
    /** The visible banner's state, or null. */
    get bannerState() {
      const box = this.box;
      return box && !box.hidden ? box.getAttribute("data-sw-state") : null;
    },
    get bannerText() {
      const box = this.box;
      return box && !box.hidden ? box.querySelector("p").textContent : null;
    },
    get toast() {
      const toast = this.shadow && this.shadow.querySelector(".toast");
      return toast && !toast.hidden ? toast : null;
    },
    button(action) {
      return this.shadow && this.shadow.querySelector(`[data-sw-action="${action}"]`);
    },
    /** The visual viewport moves (scroll) or changes size (resize), as the browser says. */
    moveViewport(geometry, type = "scroll") {
      Object.assign(window.visualViewport, geometry);
      window.visualViewport.dispatchEvent(new FakeEvent(type));
    },
    fire(type, init = {}) {
      return windowTarget.dispatchEvent(new FakeEvent(type, init));
    },
    /** Claim answered, socket open, hello answered with ready: the usual steady state. */
    async ready(extra = {}) {
      await flush();
      const socket = this.socket;
      socket.accept();
      socket.message({ type: "ready", v: 1, gen: server.gen, expires_at: server.expiresAt, session: server.session, user: server.user, ...extra });
      await flush();
      return socket;
    },
    /** Submits a form the way a browser does: a capture-phase submit event seen by document. */
    submit(form, submitter = null) {
      const event = new FakeEvent("submit", { cancelable: true, target: form, submitter });
      document.dispatchEvent(event);
      return event;
    },
    element(tag, attrs = {}, parent = document.body) {
      const el = document.createElement(tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      if (parent) parent.appendChild(el);
      return el;
    },
  };
  return tab;
}

module.exports = { createTab, Clock, Server, flush, matchSelector, parseSelectorList, ORIGIN, PAGE, HEADER, SOURCE_PATH, Document };

// ---- self-test of the fake DOM's selector engine (only when run as its own test file) ----
if (require.main === module) {
  const { test } = require("node:test");
  const assert = require("node:assert/strict");

  test("harness selector engine matches the default protectedSelector like a browser", () => {
    const doc = new Document(PAGE);
    const mk = (tag, attrs, parent) => {
      const el = doc.createElement(tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      parent.appendChild(el);
      return el;
    };
    const post = mk("form", { method: "POST" }, doc.body);
    const get = mk("form", { method: "get" }, doc.body);
    const postButton = mk("button", {}, mk("div", {}, post));
    const postSubmit = mk("input", { type: "submit" }, post);
    const postText = mk("input", { type: "text" }, post);
    const getButton = mk("button", {}, get);
    const marked = mk("a", { "data-sessionwatch-protected": "" }, doc.body);
    const selector =
      "[data-sessionwatch-protected], form[method=post i] button, form[method=post i] input[type=submit]";
    const found = doc.querySelectorAll(selector);
    assert.deepEqual(new Set(found), new Set([postButton, postSubmit, marked]));
    assert.ok(!found.includes(postText) && !found.includes(getButton));
    assert.ok(!postButton.matches("form[method=post] button"), "without the i flag the match is case-sensitive");
    assert.ok(postButton.matches("form button"));
    assert.throws(() => doc.querySelectorAll("a > b"), SyntaxError);
  });

  test("harness clock runs timers in order and intervals repeatedly", async () => {
    const clock = new Clock(0);
    const seen = [];
    clock.setTimeout(() => seen.push("b"), 20);
    clock.setTimeout(() => seen.push("a"), 10);
    const id = clock.setInterval(() => seen.push("i"), 15);
    await clock.advance(31);
    assert.deepEqual(seen, ["a", "i", "b", "i"]);
    clock.clear(id);
    await clock.advance(100);
    assert.equal(seen.length, 4);
  });
}
