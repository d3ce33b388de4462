/*! sessionwatch v0.1.0 | MIT */
// Types of the sessionwatch browser client: the global `SessionWatch` (classic <script>),
// the ES module (sessionwatch.mjs: default export + named functions) and the
// "sessionwatch:<type>" events dispatched on `document`. Wire protocol: docs/protocol.md.

/** What this tab may do. Terminal states (evicted, revoked, logged_out, expired) are final. */
export type SessionWatchState =
  | "stopped" // not started, or stop() was called
  | "unsupported" // fetch, Promise, URL or Headers missing: the client does nothing
  | "starting" // claiming this tab
  | "active" // this tab holds the current token (also while "expiring" counts down)
  | "superseded" // a newer tab of this session claimed; "Use here" (claim()) takes it back
  | "evicted"
  | "revoked"
  | "logged_out"
  | "expired";

/** Who did something (protocol §3, `by`). */
export interface Device {
  browser: string; // "Chrome 120"
  os: string; // "Windows 10"
  place: string; // IP prefix ("203.0.113.0/24") unless the app resolves it
  at: number; // epoch milliseconds
  same_browser: boolean;
}

/** Plural forms of a text with {n}, chosen with Intl.PluralRules of the banner's language. */
export type PluralText = { other: string } & Partial<Record<"zero" | "one" | "two" | "few" | "many", string>>;

/** English defaults; i18n/<lang>.json for de, es, fr, ja. A text with {n} may be PluralText. */
export interface Strings {
  superseded: string;
  supersededBy: string; // {device}, {when}
  useHere: string;
  signOutOthers: string;
  evicted: string; // {device}
  revoked: string;
  revoked_admin: string;
  revoked_password_changed: string;
  revoked_signed_out_at_provider: string;
  logged_out: string;
  expired: string;
  signIn: string;
  expiring: string | PluralText; // {n}: the live countdown
  stay: string;
  signedIn: string; // {device}
  notYou: string;
  dismiss: string;
  device: string; // {browser}, {os}
  unknownDevice: string;
  /** Appended to the device the server marks new for its user: " (new device)". */
  newDevice: string;
  /** Appended for a place (network) the user has not used lately: " (new place)". */
  newPlace: string;
  justNow: string;
  minutesAgo: string | PluralText; // {n}
  hoursAgo: string | PluralText; // {n}
  daysAgo: string | PluralText; // {n}
  /** "revoked_<reason>" for an app's own revocation reasons. */
  [key: `revoked_${string}`]: string;
}

/** Settings for start(); the same names work as data-* attributes of the <script> tag. */
export interface SessionWatchOptions {
  /** API path. Default "/_sessionwatch" (or the directory of a same-origin …/client.js). */
  prefix?: string;
  /** Start on load. Default true; only read from data-autostart. */
  autostart?: boolean;
  /** Add the tab token to same-origin fetch, XHR and POST forms. Default true. */
  attach?: boolean;
  /** How terminal states are shown. Default "banner". */
  mode?: "banner" | "overlay";
  /** Where the banner and the toast sit. Default "bottom" (never over the page's header). */
  placement?: "bottom" | "top";
  /** "Sign in again" opens signinUrl?next=<this page>. Default "/login". */
  signinUrl?: string;
  /** "Not you?" opens reauthUrl?next=<this page>&revoke_others=1; "Confirm" (step-up: a
   * request answered 401 reauth_required) opens reauthUrl?next=<this page>. Default: signinUrl. */
  reauthUrl?: string;
  /** Seconds between GET {prefix}/state checks when WebSocket is missing. Default 30. */
  pollInterval?: number;
  /** Elements disabled while this tab may not act. */
  protectedSelector?: string;
  /** A POST form (or button formaction) whose path matches this pattern (case-insensitive)
   * is a sign-out form and never disabled. Default "\\b(log|sign)[-_]?(out|off)/?$"; "" turns it off. */
  signOutPattern?: string;
  /** Language of the texts. Default "": <html lang>, then navigator.language; de, es, fr
   *  and ja load {prefix}/i18n/<lang>.json, anything else is English. */
  lang?: string;
  /** Overrides of single texts, over English or the loaded translation. */
  strings?: Partial<Strings>;
}

/** The answer of POST {prefix}/claim. */
export interface ClaimAnswer {
  tab: string; // "{gen}.{mac}"
  gen: number;
  expires_at: number;
  session: string;
  user: string | null;
}

/** Event details by type; every DOM event is "sessionwatch:<type>", cancelable. */
export interface SessionWatchEventMap {
  state: { state: SessionWatchState; previous: SessionWatchState };
  claimed: ClaimAnswer;
  /** The server confirmed this tab (answer to hello, or GET /state found it active again). */
  ready: { type: "ready"; v?: number; gen: number; expires_at: number; session: string; user: string | null };
  /** `via: "broadcast"`: another tab of this browser claimed; the server's word follows. */
  superseded: { type: "superseded"; gen?: number; by: Device | null; via?: "broadcast" };
  /** `code`: set when only the close code told (no message); `by` may then be missing. */
  evicted: { type: "evicted"; by?: Device | null; code?: number };
  revoked: { type: "revoked"; reason?: string; code?: number };
  logged_out: { type: "logged_out"; code?: number };
  /** `reason` ("expired", "no_session") when GET /state answered 401. */
  expired: { type: "expired"; reason?: string; code?: number };
  expiring: { type: "expiring"; in: number; expires_at: number };
  extended: { type: "extended"; expires_at: number };
  signed_in: { type: "signed_in"; by: Device };
  /** A request of this tab (fetch, XHR) was answered 401 reauth_required (step-up). */
  reauth_required: { error: "reauth_required"; max_age: number; message?: string };
  /** Session `id` of this user (as GET /sessions lists it) has `live_tabs` live tabs,
   * counted at `at` (ms; keep the greater). Only when the server sets presence_events. */
  presence: { type: "presence"; id: string; live_tabs: number; at: number };
}

export type SessionWatchEventType = keyof SessionWatchEventMap;

/** preventDefault() on the event suppresses the built-in banner for that state. */
export type SessionWatchListener<K extends SessionWatchEventType> = (
  detail: SessionWatchEventMap[K],
  event: CustomEvent<SessionWatchEventMap[K]> | null
) => void;

/** The lifecycle values of state(), by name. */
export declare const State: {
  readonly STOPPED: "stopped";
  readonly UNSUPPORTED: "unsupported";
  readonly STARTING: "starting";
  readonly ACTIVE: "active";
  readonly SUPERSEDED: "superseded";
  readonly EVICTED: "evicted";
  readonly REVOKED: "revoked";
  readonly LOGGED_OUT: "logged_out";
  readonly EXPIRED: "expired";
};

/** The WebSocket close codes the client acts on (docs/protocol.md §3, sessionwatch.CloseCode). */
export declare const CloseCode: {
  readonly EXPIRED: 4002;
  readonly REVOKED: 4003;
  readonly LOGGED_OUT: 4004;
  readonly EVICTED: 4005;
  readonly UNSUPPORTED_VERSION: 4006;
  readonly TAB_INVALID: 4007;
  readonly TOO_MANY_SOCKETS: 4011;
  readonly ROTATED: 4013;
};

export interface SessionWatchAPI {
  readonly version: string;
  readonly State: typeof State;
  readonly CloseCode: typeof CloseCode;
  /** Starts watching (claim, socket, token attachment). While running: re-configures
   *  (same prefix: the new options apply at once; another prefix: stop, then start). */
  start(options?: SessionWatchOptions): void;
  /** Stops everything, hides the UI and forgets the token. */
  stop(): void;
  /** Adds a listener; returns the function that removes it. If an event of this type
   *  happened in the current state, the listener is called with it at once (event null). */
  on<K extends SessionWatchEventType>(type: K, listener: SessionWatchListener<K>): () => void;
  off<K extends SessionWatchEventType>(type: K, listener: SessionWatchListener<K>): void;
  /** "Use here": claims this tab anew (the other tabs become superseded). */
  claim(): Promise<ClaimAnswer>;
  /** "Stay signed in": POST {prefix}/extend. */
  extend(): Promise<{ expires_at: number }>;
  /** The current tab token, or null. */
  token(): string | null;
  state(): SessionWatchState;
}

declare const SessionWatch: SessionWatchAPI;
export default SessionWatch;
export declare const version: SessionWatchAPI["version"];
export declare const start: SessionWatchAPI["start"];
export declare const stop: SessionWatchAPI["stop"];
export declare const on: SessionWatchAPI["on"];
export declare const off: SessionWatchAPI["off"];
export declare const claim: SessionWatchAPI["claim"];
export declare const extend: SessionWatchAPI["extend"];
export declare const token: SessionWatchAPI["token"];
export declare const state: SessionWatchAPI["state"];

type SessionWatchDocumentEvents = {
  [K in SessionWatchEventType as `sessionwatch:${K}`]: CustomEvent<SessionWatchEventMap[K]>;
};

declare global {
  /** Defined by the classic script. */
  var SessionWatch: SessionWatchAPI;
  interface DocumentEventMap extends SessionWatchDocumentEvents {}
}
