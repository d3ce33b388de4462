"""Issue 22, item 1's stall pattern as a fault: ``DEBUG SLEEP 5.8``, claims at 0.2 s
(the oldest waiters on their workers' script connections; they time out at 5.2 s) and
more at 3.6 s (their own deadlines, sent + 4 s, are still ahead when Redis wakes).
Before the fix the later ones were answered 503 at 5.2 s and took effect at 5.8 s.

Each claim is made by a probe browser of its own (a fresh user, signed in before the
stall), so its outcome is known exactly: after Redis woke, its previous token must
still be ``active`` if the claim was answered as failed (5xx or no answer), and
superseded by the answered generation if it was answered 200. The count of claims
that took effect after a failed answer is invariant (g)."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

from .clients import Answer, request
from .topology import API_KEY

__all__ = ["stall_claims"]

SLEEP = 5.8
HEAD_AT, LATER_AT = 0.2, 3.6
PER_HOST = 4  # claims per host at each moment: two workers each get some, most likely
_names = itertools.count(1)


@dataclass
class _Probe:
    host: str
    cookies: dict[str, str]
    token: str
    gen: int
    answer: Answer | None = None


async def _signed_in(host: str, user: str) -> _Probe | None:
    """A browser signed in as ``user`` through the session API (the service has no
    sign-in of its own), with its first claim."""
    login = await request(
        host,
        "POST",
        "/_sessionwatch/api/v1/login",
        cookies={},
        headers={"Authorization": f"Bearer {API_KEY}"},
        json_body={"user": user, "user_agent": "faults"},
        browser=False,
    )
    if login.status != 200 or not isinstance(login.body, dict):
        return None
    cookie = login.body["cookie"]
    cookies = {cookie["name"]: cookie["value"]}
    claim = await request(host, "POST", "/_sessionwatch/claim", cookies=cookies, json_body={})
    if claim.status != 200 or not isinstance(claim.body, dict):
        return None
    cookies.update({k: v for k, v in claim.cookies.items() if v is not None})
    return _Probe(host, cookies, str(claim.body["tab"]), int(claim.body["gen"]))


async def _claim(probe: _Probe) -> None:
    probe.answer = await request(
        probe.host, "POST", "/_sessionwatch/claim", cookies=probe.cookies, json_body={}
    )


async def _state(probe: _Probe) -> dict[str, Any] | None:
    """The probe's session as Redis holds it, once Redis answers again (bounded)."""
    for _ in range(40):
        answer = await request(
            probe.host,
            "GET",
            "/_sessionwatch/state",
            cookies=probe.cookies,
            headers={"X-SessionWatch-Tab": probe.token},
        )
        if answer.status == 200 and isinstance(answer.body, dict):
            return answer.body
        await asyncio.sleep(0.25)
    return None


async def stall_claims(ctx: Any, shot: Any) -> None:
    hosts = [host.url for host in ctx.topology.hosts if host.url not in ctx.down]
    tag = f"{next(_names)}-{int(time.time())}"
    signed = await asyncio.gather(
        *(
            _signed_in(host, f"stall-{tag}-{i}-{j}")
            for i, host in enumerate(hosts)
            for j in range(2 * PER_HOST)
        )
    )
    probes = [probe for probe in signed if probe is not None]
    if len(probes) < len(signed):
        shot.note += f" {len(signed) - len(probes)} probes could not sign in"
    heads = probes[0::2]
    later = probes[1::2]
    stall = ctx.topology.primary().cli_background("DEBUG", "SLEEP", str(SLEEP))
    began = time.monotonic()
    try:
        await asyncio.sleep(HEAD_AT)
        first = asyncio.gather(*(_claim(probe) for probe in heads))
        await asyncio.sleep(max(0.0, began + LATER_AT - time.monotonic()))
        await asyncio.gather(first, *(_claim(probe) for probe in later))
    finally:
        await asyncio.to_thread(stall.wait, SLEEP + 30)
    applied_after_failure = 0
    answered: dict[str, int] = {}
    for probe, state in zip(probes, await asyncio.gather(*map(_state, probes)), strict=True):
        assert probe.answer is not None
        status = probe.answer.status
        answered[str(status)] = answered.get(str(status), 0) + 1
        if state is None:
            shot.note += " a probe's state could not be read"
            continue
        took_effect = state.get("tab") != "active" or int(state.get("gen", 0)) != probe.gen
        if status != 200 and took_effect:
            applied_after_failure += 1
            shot.examples.append(
                f"(g) claim answered {status or probe.answer.error} took effect later: {state}"
            )
    shot.failed_then_applied = applied_after_failure
    shot.note = (
        f"{shot.note} claims answered {dict(sorted(answered.items()))}, "
        f"{applied_after_failure} took effect after a failed answer"
    ).strip()
