"""The invariants of issue 13, checked over the complete history, and the report.

(a) no protected request with a token superseded, logged out or revoked before it was
    sent got 2xx;
(b) every tab whose token was superseded/revoked while connected was told within
    ``TELL_WITHIN`` s of its host regaining Redis (the fault's recovery);
(c) a user never had more live sessions than the policy allows once logins were answered;
(d) no request answered 2xx for a session that Redis no longer has (wiped);
(e) every host answers ``/readyz`` 200 within ``RECOVER_WITHIN`` s of the fault healing,
    and no request sent after that is answered 503;
(f) no worker deadlocked or leaked sockets (``/metrics`` and ``/healthz`` at the end);
(g) no claim answered as failed took effect later (``stall_claims.py``'s probes, whose
    outcome is known exactly; issue 22, item 1);
(j) no end (logout, revocation, eviction) acknowledged before a failover is undone by it
    (durable ends; docs/reliability.md guarantee (j)): every session whose end was
    answered in a failover's loss window is asked again once recovered
    (``Workload.ends_alive``), and a protected request that passes with a token of a
    session ended in that window counts too.

Every observation is attributed to the window of the fault before it (``baseline``
before the first).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from .faults import Injection
from .workload import LIMIT, Workload

__all__ = ["Report", "check"]

TELL_WITHIN = 10.0
RECOVER_WITHIN = 10.0
INVARIANTS = "abcdefgj"


@dataclass
class Row:
    fault: str
    injected: int = 0
    ops: int = 0
    violations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INVARIANTS, 0))
    tell_max: float = 0.0
    told: int = 0
    recover_max: float = 0.0
    outage_max: float = 0.0
    during_503: int = 0
    after_503: int = 0
    lost_writes: int = 0
    ends_checked: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    rows: dict[str, Row]
    examples: list[str]
    mode: str
    seconds: float
    lost_writes: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # "kind status" -> count

    @property
    def violations(self) -> int:
        return sum(sum(row.violations.values()) for row in self.rows.values())

    def table(self) -> str:
        head = (
            "| fault | injected | ops | a | b | c | d | e | f | g | j | tabs told"
            " | time to tell max (s) | time to recover max (s) | injected to recovered max (s)"
            " | 503 during | 503 after | lost on failover | ends asked after failover |"
        )
        lines = [head, "|" + "---|" * 19]
        total = Row("**total**")
        for row in self.rows.values():
            lines.append(self._line(row))
            total.injected += row.injected
            total.ops += row.ops
            total.told += row.told
            total.during_503 += row.during_503
            total.after_503 += row.after_503
            total.tell_max = max(total.tell_max, row.tell_max)
            total.recover_max = max(total.recover_max, row.recover_max)
            total.outage_max = max(total.outage_max, row.outage_max)
            total.lost_writes += row.lost_writes
            total.ends_checked += row.ends_checked
            for key, value in row.violations.items():
                total.violations[key] += value
        lines.append(self._line(total))
        return "\n".join(lines)

    @staticmethod
    def _line(row: Row) -> str:
        v = row.violations
        return (
            f"| {row.fault} | {row.injected} | {row.ops} | "
            + " | ".join(str(v[k]) for k in INVARIANTS)
            + f" | {row.told} | {row.tell_max:.2f} | {row.recover_max:.2f} | {row.outage_max:.2f}"
            f" | {row.during_503} | {row.after_503} | {row.lost_writes} | {row.ends_checked} |"
        )


def check(
    workload: Workload,
    injections: list[Injection],
    end: dict[str, Any],
    *,
    mode: str,
    seconds: float,
) -> Report:
    """Every invariant over the whole history. ``end`` holds the final probes of (f)."""
    ordered = sorted(injections, key=lambda shot: shot.injected)
    rows: dict[str, Row] = {"baseline": Row("baseline")}
    for shot in ordered:
        rows.setdefault(shot.name, Row(shot.name))
        row = rows[shot.name]
        if shot.skipped:
            row.notes.append(f"not injected: {shot.skipped}")
            continue
        row.injected += 1
        if shot.recovered is None:
            row.violations["e"] += 1
            row.notes.append(f"never recovered ({shot.note})")
        else:
            took = max(0.0, shot.recovered - shot.healed)
            row.recover_max = max(row.recover_max, took)
            row.outage_max = max(row.outage_max, shot.recovered - shot.injected)
            if took > RECOVER_WITHIN:
                row.violations["e"] += 1
        if shot.note:
            row.notes.append(shot.note)
        row.violations["g"] += shot.failed_then_applied
        row.violations["j"] += shot.ends_lost
        row.ends_checked += shot.ends_checked
    examples: list[str] = [
        f"{shot.name}: {example}" for shot in ordered for example in shot.examples
    ][:20]

    # When the next fault began, per fault: a request still unanswered then may have
    # been hit by it (no verdict of (e) on it).
    following = {id(shot): nxt.injected for shot, nxt in itertools.pairwise(ordered)}
    wall = time.time() - time.monotonic()  # to print wall-clock times in examples

    def window(at: float) -> tuple[Row, Injection | None]:
        current = None
        for shot in ordered:
            if shot.injected <= at:
                current = shot
            else:
                break
        return (rows[current.name] if current else rows["baseline"]), current

    def violate(row: Row, key: str, text: str) -> None:
        row.violations[key] += 1
        if len(examples) < 20:
            examples.append(f"({key}) {row.fault}: {text}")

    loss_windows = [window for shot in ordered for window in shot.loss_windows]

    def maybe_lost(at: float | None) -> bool:
        return at is not None and any(start <= at <= end for start, end in loss_windows)

    # Users with a state change acknowledged in a loss window: their server state may
    # differ from what the clients were told.
    changes = ("login", "claim", "login_claim", "use_here", "logout", "revoke", "revoke_others")
    affected = {
        op.user
        for op in workload.ops
        if op.kind in changes and op.status in (200, 302) and maybe_lost(op.done)
    }
    lost_writes = 0
    browsers = {b.id: b for b in workload.browsers}
    for op in workload.ops:
        row, shot = window(op.sent)
        row.ops += 1
        if op.status == 503:
            if (
                shot is not None
                and shot.recovered is not None
                and op.sent >= shot.recovered
                and op.done < following.get(id(shot), float("inf"))
            ):
                row.after_503 += 1
                violate(
                    row,
                    "e",
                    f"{op.kind} to {op.host} answered 503 "
                    f"{op.sent - shot.recovered:.2f}s after recovery "
                    f"(sent {time.strftime('%H:%M:%S', time.gmtime(op.sent + wall))} UTC)",
                )
            else:
                row.during_503 += 1
        if op.kind == "sessions" and op.count is not None and op.count > LIMIT:
            if op.user in affected:
                lost_writes += 1
                row.lost_writes += 1
                continue
            violate(row, "c", f"{op.user} listed {op.count} live sessions (limit {LIMIT})")
        if op.kind in ("protected", "stale_protected") and 200 <= op.status < 300:
            browser = browsers.get(op.browser)
            if browser is None:
                continue
            invalid = browser.invalid_at(op.token)
            if invalid is not None and invalid < op.sent:
                if maybe_lost(invalid) and invalid == browser.ended_at:
                    violate(
                        row,
                        "j",
                        f"{op.kind} of a session ended (acknowledged) "
                        f"{op.sent - invalid:.2f}s before, in a failover's loss window, "
                        f"answered {op.status} ({browser.end_reason})",
                    )
                elif maybe_lost(invalid):
                    lost_writes += 1
                    row.lost_writes += 1
                else:
                    violate(
                        row,
                        "a",
                        f"{op.kind} with a token invalid since "
                        f"{op.sent - invalid:.2f}s ({browser.end_reason or 'superseded'}) "
                        f"answered {op.status}",
                    )
            if browser.lost_at is not None and browser.lost_at < op.sent:
                violate(
                    row,
                    "d",
                    f"{op.kind} {op.sent - browser.lost_at:.2f}s after the state "
                    f"was wiped answered {op.status}",
                )

    for tab in workload.tabs:
        browser = tab.browser
        times = [
            t
            for t in (
                browser.tokens.get(tab.token, (0, None))[1],
                browser.ended_at,
                browser.lost_at,
            )
            if t is not None
        ]
        if not times:
            continue
        invalid = min(times)
        closed_untold = tab.closed_at is not None and (
            tab.told_at is None or tab.closed_at < tab.told_at
        )
        if closed_untold and tab.closed_at < invalid + TELL_WITHIN:  # type: ignore[operator]
            continue  # the workload closed it before its deadline: no verdict
        row, shot = window(invalid)
        base = invalid
        if shot is not None and shot.recovered is not None and invalid < shot.recovered:
            base = shot.recovered
        if (tab.told_at is None or tab.told_at > base + TELL_WITHIN) and maybe_lost(invalid):
            lost_writes += 1
            row.lost_writes += 1
            continue
        if tab.told_at is None or tab.told_at > base + TELL_WITHIN:
            late = "never" if tab.told_at is None else f"after {tab.told_at - base:.2f}s"
            violate(
                row,
                "b",
                f"tab of {browser.user} (token invalid: "
                f"{browser.end_reason or ('wiped' if browser.lost_at else 'superseded')}) "
                f"told {late}; {tab.attempts} connects; last {tab.messages[-3:]}; tab opened "
                f"{invalid - tab.created:.2f}s before, login {invalid - browser.created:.2f}s before",
            )
            continue
        row.told += 1
        row.tell_max = max(row.tell_max, max(0.0, tab.told_at - base))

    final = rows.setdefault("end", Row("end"))
    for host, probe in end.items():
        if probe.get("healthz") != 200:
            violate(final, "f", f"{host} /healthz answered {probe.get('healthz')} (deadlock?)")
        if probe.get("sockets", 0) != 0:
            violate(final, "f", f"{host} still counts {probe.get('sockets')} sockets")
    if not final.violations["f"] and not final.ops:
        del rows["end"]
    # Claims no client saw acknowledged that took effect: a tab was told a generation
    # above every one its browser was answered (informational: a reply lost after the
    # script ran looks the same; DEBUG SLEEP's phantom is tested exactly elsewhere).
    unacknowledged = 0
    for browser in workload.browsers:
        acked = max((gen for gen, _ in browser.tokens.values()), default=0)
        told = [
            int(kind.split(":")[1])
            for tab in browser.tabs
            for _, kind in tab.messages
            if kind.startswith("superseded:")
        ]
        if told and max(told) > acked and not browser.replaced:
            unacknowledged += 1
    outcomes: dict[str, int] = {"unacknowledged claims that took effect": unacknowledged}
    for op in workload.ops:
        key = f"{op.kind}:{op.status or op.error}"
        outcomes[key] = outcomes.get(key, 0) + 1
    return Report(rows, examples, mode, seconds, lost_writes, outcomes)
