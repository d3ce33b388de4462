/*! sessionwatch v0.1.0 | MIT */
// ES-module entry point. It runs the classic script, which defines the one global
// (globalThis.SessionWatch), and re-exports its API. A module has no
// document.currentScript, and a bundle of it is not the client's own <script> tag, so
// nothing starts by itself here: call start().
import "./sessionwatch.js";

const SessionWatch = globalThis.SessionWatch;

export default SessionWatch;
export const { version, State, CloseCode, start, stop, on, off, claim, extend, token, state } = SessionWatch;
