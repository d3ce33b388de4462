// The Node Socket.IO peer of the benchmark (docs/performance.md, "Peers"): tab takeover as
// it is commonly built on Node — Socket.IO 4 with @socket.io/redis-adapter, two worker
// processes (the `cluster` module shares one port; websocket transport only, so no sticky
// sessions are needed), the same job as tests/bench/socketio_app.py:
//
// - POST /claim: the session id lives in a signed cookie (HMAC-SHA256, as
//   cookie-signature / express-session sign it); the claim bumps the session's generation
//   in Redis (HINCRBY, one round trip) and emits superseded{gen, by} to the session's room
//   (the adapter publishes it on Redis; every worker receives it and looks the room up).
// - Socket.IO connect: the cookie names the session, the tab (its generation) comes as the
//   auth payload and is checked against Redis (HGET); the socket joins s:<public id>.
//
// Usage: node server.js PORT. Environment: BENCH_REDIS_URL, SECRET_KEY, BENCH_READY_DIR (each worker writes
// ready-<pid> there once it listens), BENCH_WORKERS (default 2).
"use strict";

const cluster = require("node:cluster");
const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");

const WORKERS = Number(process.env.BENCH_WORKERS || 2);
const COOKIE = "sid";

if (cluster.isPrimary) {
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  // A worker that dies is not replaced: the benchmark sees the failure instead.
  cluster.on("exit", (worker, code, signal) => {
    console.error(`worker ${worker.process.pid} exited (${signal || code})`);
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.kill("SIGTERM");
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

function publicId(sessionId) {
  const digest = crypto.createHash("sha256").update("bench/public\0" + sessionId).digest();
  return digest.toString("base64url").slice(0, 22);
}

function sign(value, secret) {
  return value + "." + crypto.createHmac("sha256", secret).update(value).digest("base64url");
}

function unsign(signed, secret) {
  const dot = signed.lastIndexOf(".");
  if (dot < 1) return null;
  const value = signed.slice(0, dot);
  const expected = Buffer.from(sign(value, secret));
  const given = Buffer.from(signed);
  return expected.length === given.length && crypto.timingSafeEqual(expected, given) ? value : null;
}

function readCookie(header, name) {
  for (const part of (header || "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

function json(res, status, body, headers = {}) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(data),
    ...headers,
  });
  res.end(data);
}

async function main() {
  const { createClient } = require("redis");
  const { Server } = require("socket.io");
  const { createAdapter } = require("@socket.io/redis-adapter");

  const secret = process.env.SECRET_KEY;
  const url = process.env.BENCH_REDIS_URL;
  const redis = createClient({ url });
  const sub = redis.duplicate();
  for (const client of [redis, sub]) client.on("error", (err) => console.error("redis:", err));
  await Promise.all([redis.connect(), sub.connect()]);

  async function claim(req, res) {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host}`) {
      return json(res, 403, { error: "origin_forbidden" });
    }
    const cookie = readCookie(req.headers.cookie, COOKIE);
    let sessionId = cookie && unsign(decodeURIComponent(cookie), secret);
    const headers = {};
    if (!sessionId) {
      sessionId = crypto.randomBytes(32).toString("base64url");
      const value = encodeURIComponent(sign(sessionId, secret));
      headers["Set-Cookie"] = `${COOKIE}=${value}; Path=/; HttpOnly; SameSite=Lax`;
    }
    const pub = publicId(sessionId);
    const gen = await redis.hIncrBy(`node:s:${pub}`, "gen", 1);
    if (gen > 1) {
      const by = {
        browser: "Chrome 124",
        os: "Linux",
        place: "127.0.0.0/24",
        at: Date.now(),
        same_browser: false,
      };
      io.to(`s:${pub}`).emit("superseded", { gen, by });
    }
    json(res, 200, { tab: String(gen), gen, session: pub }, headers);
  }

  const server = http.createServer((req, res) => {
    if (req.method === "GET" && req.url === "/healthz") return json(res, 200, { status: "ok" });
    if (req.method === "POST" && req.url === "/claim") {
      req.resume(); // the body ("{}") is not read
      req.on("end", () =>
        claim(req, res).catch((err) => {
          console.error(err);
          json(res, 500, { error: "internal" });
        }),
      );
      return;
    }
    json(res, 404, { error: "not_found" });
  });

  const io = new Server(server, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    adapter: createAdapter(redis, sub),
  });

  io.use(async (socket, next) => {
    try {
      const cookie = readCookie(socket.handshake.headers.cookie, COOKIE);
      const sessionId = cookie && unsign(decodeURIComponent(cookie), secret);
      if (!sessionId) return next(new Error("no_session"));
      const pub = publicId(sessionId);
      const gen = await redis.hGet(`node:s:${pub}`, "gen");
      const auth = socket.handshake.auth;
      if (gen === null || gen === undefined || !auth || auth.tab !== gen) {
        return next(new Error("tab_invalid"));
      }
      socket.data.room = `s:${pub}`;
      next();
    } catch (err) {
      next(err);
    }
  });

  // Joined once connected (the connect ack and the join happen in the same tick).
  io.on("connection", (socket) => socket.join(socket.data.room));

  server.listen(Number(process.argv[2] || process.env.PORT), "127.0.0.1", () => {
    const ready = process.env.BENCH_READY_DIR;
    if (ready) fs.writeFileSync(path.join(ready, `ready-${process.pid}`), "");
  });
  process.on("SIGTERM", () => {
    io.close();
    Promise.allSettled([redis.quit(), sub.quit()]).then(() => process.exit(0));
  });
}
