"""The workload: simulated users with browsers (sessions) and tabs, doing claims, "Use
here", logins past the session limit, logouts, revocations and protected requests
across hosts at a steady, bounded rate. Every request is recorded with its send and
answer times and outcome; every tab records when it was told.

The hosts run the production service: users sign in and out through its session API
(as the upstream app would, after checking a password), and a protected request is its
forward-auth ``/verify`` with the tab's token (as the proxy would ask).

The model is what the clients *know*: an answer 2xx/302 acknowledges a state change
(a claim makes every earlier token of its session stale at that moment; a logout or a
revocation ends the session at that moment). An answer that is not an answer (5xx,
timeout) leaves the outcome unknown: the user is retired (no more state changes, so
nothing is inferred from a state the clients cannot know) and a fresh user takes over.
Each user has at most one operation in flight, so its state changes are ordered."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clients import Answer, Tab, request
from .topology import API_KEY, SESSIONS_PER_USER

__all__ = ["LIMIT", "Browser", "Op", "Workload"]

LIMIT = SESSIONS_PER_USER  # the hosts' policy (evict_oldest): logins past it evict the oldest
API = "/_sessionwatch/api/v1/"
# Traefik's way of asking /verify about a protected request (GET: no origin rule).
PROTECTED = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/transfer"}
MAX_TABS = 3  # open tabs per browser; older told tabs are closed
WEIGHTS = {
    "protected": 40,
    "stale_protected": 12,
    "claim": 14,
    "use_here": 8,
    "login": 9,
    "logout": 4,
    "revoke": 4,
    "revoke_others": 2,
    "sessions": 5,
}


@dataclass(slots=True)
class Op:
    """One request and its outcome."""

    kind: str
    user: str
    browser: int
    host: str
    sent: float
    done: float
    status: int
    error: str = ""
    token: str = ""
    count: int | None = None  # sessions listed (``sessions``)


@dataclass(eq=False)
class Browser:
    """One browser = one session (cookie jar) of a user."""

    id: int
    user: str
    cookies: dict[str, str] = field(default_factory=dict)
    session: str = ""  # public id
    created: float = 0.0  # login acknowledged
    ended_at: float | None = None  # logout / revocation / eviction acknowledged
    end_reason: str = ""
    ended_cookies: dict[str, str] = field(default_factory=dict)  # its cookie when it ended
    lost_at: float | None = None  # the stored state was wiped (FLUSHALL, empty restart)
    tokens: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # gen, stale_at
    current: str = ""
    tabs: list[Tab] = field(default_factory=list)
    replaced: bool = False  # a claim found the session gone (see Workload._claim_for)

    @property
    def live(self) -> bool:
        return self.ended_at is None and self.lost_at is None and not self.replaced

    def end(self, at: float, reason: str, cookies: dict[str, str] | None = None) -> None:
        """Its session was ended (the end acknowledged at ``at``)."""
        self.ended_at, self.end_reason = at, reason
        self.ended_cookies = dict(self.cookies if cookies is None else cookies)

    def invalid_at(self, token: str) -> float | None:
        """When ``token`` definitely stopped holding (``None``: as far as is known, it holds)."""
        times = [t for t in (self.ended_at, self.tokens.get(token, (0, None))[1]) if t is not None]
        return min(times) if times else None


@dataclass(eq=False)
class User:
    name: str
    browsers: list[Browser] = field(default_factory=list)
    busy: bool = False
    retired: bool = False

    def live(self) -> list[Browser]:
        return [b for b in self.browsers if b.live]


class Workload:
    """Runs operations against ``hosts()`` (the hosts a load balancer would use now)."""

    def __init__(
        self, hosts: Callable[[], list[str]], *, users: int = 8, rate: float = 12.0, seed: int = 0
    ) -> None:
        self.hosts = hosts
        self.rate = rate
        self.random = random.Random(seed)
        self.ops: list[Op] = []
        self.browsers: list[Browser] = []
        self.users: list[User] = []
        self.tabs: list[Tab] = []
        self.logins_open = asyncio.Event()
        self.logins_open.set()
        self._names = itertools.count(1)
        self._browser_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.user_count = users
        for _ in range(users):
            self._new_user()

    def _new_user(self) -> User:
        user = User(f"u{next(self._names)}-{self.random.randrange(10**6)}")
        self.users.append(user)
        return user

    def pick_host(self) -> str:
        hosts = self.hosts()
        return self.random.choice(hosts) if hosts else "http://127.0.0.1:9"

    # -- running -------------------------------------------------------------------

    async def run(self, seconds: float, *, max_ops: int = 1_000_000) -> None:
        """Start operations at ``rate`` per second for ``seconds`` (at most ``max_ops``)."""
        deadline = time.monotonic() + seconds
        started = 0
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while time.monotonic() < deadline and started < max_ops and not self._stopping:
            next_at += interval
            idle = [u for u in self.users if not u.busy and not u.retired]
            if idle:
                user = self.random.choice(idle)
                user.busy = True
                task = asyncio.create_task(self._one(user))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                started += 1
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def drain(self, timeout: float = 30.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self) -> None:
        self._stopping = True
        await self.drain()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(tab.close() for tab in self.tabs))

    async def _one(self, user: User) -> None:
        try:
            live = user.live()
            if not live:
                kind = "login"
            else:
                kinds, weights = zip(*WEIGHTS.items(), strict=True)
                kind = self.random.choices(kinds, weights)[0]
            await getattr(self, f"_{kind}")(user)
        finally:
            user.busy = False
            if user.retired:
                self._new_user()

    def _retire(self, user: User) -> None:
        if not user.retired:
            user.retired = True

    def retire_all(self) -> None:
        """After a fault that wiped the state: nobody's state is known any more."""
        for user in self.users:
            user.retired = True
        for _ in range(self.user_count):
            self._new_user()

    def retire_changed(self, start: float, end: float) -> int:
        """Retire every user with a state change answered between ``start`` and ``end``
        (a failover may have lost it: what the clients were told is no base for new
        inferences). Returns how many."""
        changes = {"login", "claim", "login_claim", "use_here", "logout", "revoke", "revoke_others"}
        names = {
            op.user
            for op in self.ops
            if op.kind in changes and op.status in (200, 302) and start <= op.done <= end
        }
        retired = 0
        for user in self.users:
            if user.name in names and not user.retired:
                user.retired = True
                retired += 1
        for _ in range(retired):
            self._new_user()
        return retired

    def tabs_waiting(self) -> int:
        """Open tabs whose token no longer holds and that were not told yet."""
        waiting = 0
        for tab in self.tabs:
            browser = tab.browser
            stale = browser.tokens.get(tab.token, (0, None))[1]
            invalid = stale is not None or browser.ended_at is not None or browser.lost_at
            if invalid and tab.told_at is None and tab.closed_at is None:
                waiting += 1
        return waiting

    def state_lost(self, start: float, end: float) -> None:
        """The store was wiped between ``start`` and ``end``: every session whose login
        was answered before ``start`` is gone from ``end`` on. (One answered in between
        may or may not be: nothing is inferred, its user is retired with all others.)"""
        for browser in self.browsers:
            if browser.created and browser.created <= start and browser.lost_at is None:
                browser.lost_at = end

    async def ends_alive(self, start: float, end: float) -> tuple[int, list[str]]:
        """Ask, for every session whose end was acknowledged between ``start`` and
        ``end``, whether its cookie passes ``/verify`` again (after a failover: an end
        the new primary lost). Returns (how many were asked, the ones that passed)."""
        ended = [b for b in self.browsers if b.ended_at is not None and start <= b.ended_at <= end]
        answers = await asyncio.gather(
            *(
                request(
                    self.pick_host(),
                    "GET",
                    "/_sessionwatch/verify?require=session",
                    cookies=browser.ended_cookies,
                    headers=PROTECTED,
                )
                for browser in ended
            )
        )
        alive = [
            f"{browser.user}'s session {browser.session} ({browser.end_reason}) passed "
            f"{answer.status}"
            for browser, answer in zip(ended, answers, strict=True)
            if 200 <= answer.status < 300
        ]
        return len(ended), alive

    # -- recording -------------------------------------------------------------------

    async def _send(
        self,
        kind: str,
        user: User,
        browser: Browser | None,
        method: str,
        path: str,
        *,
        token: str = "",
        **options: Any,
    ) -> tuple[Op, Answer]:
        host = self.pick_host()
        headers = dict(options.pop("headers", {}))
        if token:
            headers["X-SessionWatch-Tab"] = token
        upstream = path.startswith(API)
        if upstream:  # the upstream app's call: the browser's cookie goes in the body
            headers["Authorization"] = f"Bearer {API_KEY}"
            jar = browser.cookies if browser else {}
            options["json_body"] = {
                **options.get("json_body", {}),
                "cookie": "; ".join(f"{k}={v}" for k, v in jar.items()) or None,
            }
        sent = time.monotonic()
        answer = await request(
            host,
            method,
            path,
            cookies={} if upstream else browser.cookies if browser else {},
            headers=headers,
            browser=not upstream,
            **options,
        )
        op = Op(
            kind,
            user.name,
            browser.id if browser else 0,
            host,
            sent,
            time.monotonic(),
            answer.status,
            answer.error,
            token,
        )
        self.ops.append(op)
        relayed = answer.body.get("cookie") if isinstance(answer.body, dict) else None
        if browser is not None and upstream and answer.status == 200 and isinstance(relayed, dict):
            answer.cookies[str(relayed["name"])] = str(relayed["value"]) or None
        if browser is not None:
            for key, value in answer.cookies.items():
                if value is None:
                    browser.cookies.pop(key, None)
                else:
                    browser.cookies[key] = value
        return op, answer

    @staticmethod
    def _unknown(op: Op) -> bool:
        return op.status == 0 or op.status >= 500

    # -- operations ------------------------------------------------------------------

    async def _claim_for(self, user: User, browser: Browser, kind: str) -> str | None:
        cookies = dict(browser.cookies)
        op, answer = await self._send(
            kind, user, browser, "POST", "/_sessionwatch/claim", json_body={}
        )
        if (
            op.status == 200
            and isinstance(answer.body, dict)
            and answer.body.get("user") != user.name
        ):
            # The session was gone (wiped): the claim started a new anonymous one. This
            # browser's model ends here (cookies restored); its user is retired.
            browser.cookies = cookies
            browser.replaced = True
            self._retire(user)
            return None
        if op.status == 200 and isinstance(answer.body, dict):
            token, gen = str(answer.body["tab"]), int(answer.body["gen"])
            for old, (old_gen, stale) in list(browser.tokens.items()):
                if stale is None:
                    browser.tokens[old] = (old_gen, op.done)
            browser.tokens[token] = (gen, None)
            browser.session = str(answer.body.get("session") or browser.session)
            browser.current = token
            return token
        if self._unknown(op):
            self._retire(user)
        elif op.status == 401 and browser.live:
            self._retire(user)  # the model thought it live: stop inferring for this user
        return None

    def _open_tab(self, browser: Browser, token: str) -> None:
        gen = browser.tokens[token][0]
        tab = Tab(browser, token, gen, self.pick_host)
        tab.start()
        browser.tabs.append(tab)
        self.tabs.append(tab)
        told = [t for t in browser.tabs if t.told_at is not None and t.closed_at is None]
        while len([t for t in browser.tabs if t.closed_at is None]) > MAX_TABS and told:
            oldest = told.pop(0)
            oldest.closed_at = time.monotonic()  # told: its task has already ended

    async def _login(self, user: User) -> None:
        if not self.logins_open.is_set():
            return
        browser = Browser(next(self._browser_ids), user.name)
        body = {"user": user.name, "user_agent": "faults"}
        op, answer = await self._send("login", user, browser, "POST", API + "login", json_body=body)
        if op.status != 200 or not isinstance(answer.body, dict):
            if self._unknown(op) or op.status != 403:
                self._retire(user)
            return
        browser.created = op.done
        browser.session = str(answer.body["session"])
        self.browsers.append(browser)
        live = user.live()
        user.browsers.append(browser)
        # evict_oldest: the sessions the answer names ended when it was answered (unless
        # the user was retired meanwhile: its sessions are no longer known). Which are
        # the oldest is the service's call: it orders sign-ins by the clocks of the hosts
        # that made them, and one host's clock may be stepped (clock_step).
        evicted = set(answer.body.get("evicted") or ())
        for other in live if not user.retired else []:
            if other.session in evicted:
                other.end(op.done, "evicted")
        if not user.retired and len(live) + 1 - len(evicted & {b.session for b in live}) > LIMIT:
            self._retire(user)  # a live session the model holds was not among them
        token = await self._claim_for(user, browser, "login_claim")
        if token:
            self._open_tab(browser, token)
            await self._sessions(user, browser)

    async def _claim(self, user: User) -> None:
        browser = self.random.choice(user.live())
        token = await self._claim_for(user, browser, "claim")
        if token:
            self._open_tab(browser, token)

    async def _use_here(self, user: User) -> None:
        """A displaced tab's "Use here": it claims again and reconnects with the new token."""
        browser = self.random.choice(user.live())
        told = [t for t in browser.tabs if t.told == "superseded" and t.closed_at is None]
        if not told:
            await self._claim(user)
            return
        tab = told[0]
        token = await self._claim_for(user, browser, "use_here")
        if token:
            await tab.close()
            self._open_tab(browser, token)

    async def _protected(self, user: User) -> None:
        browser = self.random.choice(user.live())
        if browser.current:
            await self._send(
                "protected",
                user,
                browser,
                "GET",
                "/_sessionwatch/verify?require=tab",
                token=browser.current,
                headers=PROTECTED,
            )

    async def _stale_protected(self, user: User) -> None:
        """A request with a token the model knows is no longer valid (a stale tab, or a
        session that ended or was lost): it must never be answered 2xx."""
        own = [(b, t) for b in user.live() for t in b.tokens if b.invalid_at(t) is not None]
        ended = [(b, t) for b in self.browsers[-200:] if not b.live for t in list(b.tokens)[-1:]]
        candidates = own if own and (not ended or self.random.random() < 0.6) else ended
        if not candidates:
            await self._protected(user)
            return
        browser, token = self.random.choice(candidates[-50:])
        await self._send(
            "stale_protected",
            user,
            browser,
            "GET",
            "/_sessionwatch/verify?require=tab",
            token=token,
            headers=PROTECTED,
        )

    async def _logout(self, user: User) -> None:
        browser = self.random.choice(user.live())
        cookies = dict(browser.cookies)  # the answer deletes it
        op, _ = await self._send("logout", user, browser, "POST", API + "logout")
        if op.status == 200:
            browser.end(op.done, "logged_out", cookies)
        else:
            self._retire(user)

    async def _revoke(self, user: User) -> None:
        live = user.live()
        if len(live) < 2:
            await self._login(user)
            return
        actor, target = self.random.sample(live, 2)
        if not actor.current or not target.session:
            return
        op, _ = await self._send(
            "revoke",
            user,
            actor,
            "DELETE",
            f"/_sessionwatch/sessions/{target.session}",
            token=actor.current,
        )
        if op.status == 200:
            target.end(op.done, "revoked")
        else:
            self._retire(user)

    async def _revoke_others(self, user: User) -> None:
        live = user.live()
        actor = self.random.choice(live)
        if not actor.current:
            return
        op, _ = await self._send(
            "revoke_others",
            user,
            actor,
            "POST",
            "/_sessionwatch/sessions/revoke-others",
            token=actor.current,
        )
        if op.status == 200:
            for other in live:
                if other is not actor:
                    other.end(op.done, "revoked")
        else:
            self._retire(user)

    async def _sessions(self, user: User, browser: Browser | None = None) -> None:
        """The user's live sessions as the server lists them: never more than the limit."""
        browser = browser or self.random.choice(user.live())
        op, answer = await self._send("sessions", user, browser, "GET", "/_sessionwatch/sessions")
        if op.status == 200 and isinstance(answer.body, dict):
            op.count = len(answer.body.get("sessions", []))
