"""Issue 22, item 6: what one user's many sessions cost a bystander, on a real
redis-server and a real ``sessionwatch serve``.

``--sessions`` cookieless session-API sign-ins of one user (the attacker, from as
many addresses), then for ``--seconds`` four clients loop that user's
``GET /_sessionwatch/sessions?limit=100`` (the largest page) while a bystander in its own process claims its tab
(``POST /_sessionwatch/claim``) one request after another. Prints, as JSON: the
attacker's live sessions, the listing's answer size, the worst login and list script
times in Redis (``SLOWLOG``, every command logged) and the bystander's claim p50/p99
without and with the load.

    cd tests && PYTHONPATH=../server:. python -m bench.amplifier
    cd tests && PYTHONPATH=/path/to/old/server:. python -m bench.amplifier --old
    cd tests && PYTHONPATH=../server:. python -m bench.amplifier --scripts-alone 200

``--old`` runs the code before the fix (its service knows none of the new settings);
otherwise the sign-in rates are lifted so that the attacker reaches the ceiling
(with the default rates one user signs in 25 times, then 5 times a second, per process).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import redis

from sessionwatch.backends.redis import _script_source
from support.attacks import raw_request
from support.redis_server import RedisServer
from support.service_process import ServiceProcess

API_KEY = "amplifier-bench-key-0123456789abcdef"
API = "/_sessionwatch/api/v1"
LISTERS = 4
MAX_REQUESTS = 20_000  # per loop: the time bounds it first


async def sign_in(port: int, user: str, client_ip: str) -> dict[str, Any]:
    body = json.dumps({"user": user, "client_ip": client_ip}).encode()
    headers = [("Authorization", f"Bearer {API_KEY}"), ("Content-Type", "application/json")]
    answer = await raw_request(port, "POST", API + "/login", headers, body)
    if answer.status != 200:
        raise RuntimeError(f"sign-in answered {answer.status}: {answer.body[:200]!r}")
    result: dict[str, Any] = answer.json()
    return result


def cookie_of(result: dict[str, Any]) -> str:
    return f"{result['cookie']['name']}={result['cookie']['value']}"


async def list_forever(port: int, cookie: str, until: float) -> tuple[int, int]:
    """Loop the listing until ``until``; returns (answers, bytes of the last)."""
    count, size = 0, 0
    while time.monotonic() < until and count < MAX_REQUESTS:
        answer = await raw_request(
            port, "GET", "/_sessionwatch/sessions?limit=100", [("Cookie", cookie)], timeout=30
        )
        count, size = count + 1, len(answer.body)
    return count, size


def bystander(port: int, cookie: str, seconds: float) -> list[float]:
    """Claim one tab again and again for ``seconds`` in a process of its own."""
    command = [sys.executable, "-m", "bench.amplifier", "--bystander", str(port), cookie]
    output = subprocess.run(
        [*command, str(seconds)], capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    times: list[float] = json.loads(output.stdout)
    return times


def claim_loop(port: int, cookie: str, seconds: float) -> list[float]:
    import http.client

    headers = {
        "Origin": f"http://127.0.0.1:{port}",
        "Cookie": cookie,
        "Content-Type": "application/json",
    }
    times = []
    end = time.monotonic() + seconds
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < end and len(times) < MAX_REQUESTS:
        started = time.perf_counter()
        connection.request("POST", "/_sessionwatch/claim", b"{}", headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"claim answered {answer.status}")
        times.append((time.perf_counter() - started) * 1000)
    connection.close()
    return times


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
    }


def script_times_raw(client: redis.Redis) -> dict[str, list[float]]:
    """Each script's call times since the last reset, in ms (SLOWLOG); resets it."""
    shas = {
        hashlib.sha1(_script_source(name).encode()).hexdigest(): name
        for name in ("list", "login", "claim")
    }
    times: dict[str, list[float]] = {}
    for entry in client.slowlog_get(1_000_000):
        command = entry["command"]
        args = (command.decode(errors="replace") if isinstance(command, bytes) else command).split()
        if len(args) > 1 and args[0].lower() == "evalsha" and args[1] in shas:
            times.setdefault(shas[args[1]], []).append(entry["duration"] / 1000)
    client.slowlog_reset()
    return times


def script_times(client: redis.Redis) -> dict[str, dict[str, float]]:
    """Each script's median and slowest call since the last reset, in ms."""
    return {
        name: {"median_ms": round(statistics.median(ms), 2), "worst_ms": round(max(ms), 2)}
        for name, ms in sorted(script_times_raw(client).items())
    }


async def run(sessions: int, seconds: float, old: bool) -> dict[str, Any]:
    env = {"SESSIONWATCH_API_KEYS": API_KEY}
    if not old:
        env["SESSIONWATCH_MAX_LOGINS_PER_USER_PER_SECOND"] = "1000000"
        env["SESSIONWATCH_MAX_LOGINS_PER_ADDRESS_PER_SECOND"] = "1000000"
    with RedisServer() as server, ServiceProcess(server.url, key_prefix="amp:", env=env) as service:
        client = redis.Redis(port=server.port)
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", 1_000_000)
        client.slowlog_reset()
        port = service.port
        last: dict[str, Any] = {}
        for batch in range(0, sessions, 8):  # 8 at a time, each from its own address
            results = await asyncio.gather(
                *(
                    sign_in(port, "mallory", f"198.51.{i // 250}.{i % 250 + 1}")
                    for i in range(batch, min(batch + 8, sessions))
                )
            )
            last = results[-1]
        login_times = script_times(client)
        victim = cookie_of(await sign_in(port, "bob", "192.0.2.1"))
        attacker = cookie_of(last)
        live = len(client.zrange("amp:u:mallory", 0, -1))
        baseline = await asyncio.to_thread(bystander, port, victim, seconds)
        client.slowlog_reset()
        until = time.monotonic() + seconds + 0.5
        loops = [list_forever(port, attacker, until) for _ in range(LISTERS)]
        claims, *listed = await asyncio.gather(
            asyncio.to_thread(bystander, port, victim, seconds), *loops
        )
        return {
            "code": "before" if old else "after",
            "sessions_signed_in": sessions,
            "attacker_live_sessions": live,
            "listing_answer_bytes": listed[0][1],
            "listings_served": sum(count for count, _ in listed),
            "scripts_during_sign_ins": login_times,
            "scripts_during_listing_load": script_times(client),
            "bystander_claims_alone": percentiles(baseline),
            "bystander_claims_under_listing_load": percentiles(claims),
        }


async def scripts_alone(sessions: int, calls: int, old: bool) -> dict[str, Any]:
    """The list script alone on a quiet Redis: one user with ``sessions`` sessions (no
    ceiling), ``calls`` listings one after another (the largest page after the fix,
    the whole list before); its time per call from SLOWLOG."""
    from sessionwatch.backends.base import SessionRecord, Timeouts
    from sessionwatch.backends.redis import RedisBackend
    from sessionwatch.core.tabs import new_tab_key
    from sessionwatch.core.tokens import new_session_id, public_id, user_tag

    timeouts = Timeouts(idle=1_800_000, absolute=43_200_000, refresh=60_000, tombstone=60_000)
    now = int(time.time() * 1000)
    with RedisServer() as server:
        backend = RedisBackend(server.url, key_prefix="amp:")
        await backend.connect()
        try:
            for i in range(sessions):
                record = SessionRecord(
                    id=public_id(new_session_id(user_tag("mallory"))),
                    user="mallory",
                    created=now + i,
                    seen=now + i,
                    absolute_expiry=now + i + timeouts.absolute,
                    gen=1,
                    tab_key=new_tab_key(),
                    device={"browser": "Chrome 120", "os": "Linux", "place": "198.51.100.0/24"},
                )
                await backend.login(
                    None, record, limit=None, deny=False, timeouts=timeouts, now=now + i
                )
            client = redis.Redis(port=server.port)
            client.config_set("slowlog-log-slower-than", 0)
            client.config_set("slowlog-max-len", 1_000_000)
            client.slowlog_reset()
            for _ in range(calls):
                if old:
                    await backend.list_sessions("mallory", timeouts=timeouts, now=now + sessions)
                else:
                    await backend.list_sessions(
                        "mallory", timeouts=timeouts, now=now + sessions, limit=100
                    )
            times = sorted(script_times_raw(client).get("list", []))
        finally:
            await backend.disconnect()
    return {
        "code": "before" if old else "after",
        "sessions": sessions,
        "list_calls": len(times),
        "list_ms": {
            "p50": round(statistics.median(times), 2),
            "p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
            "max": round(times[-1], 2),
        },
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--bystander":
        port, cookie, seconds = sys.argv[2:5]
        print(json.dumps(claim_loop(int(port), cookie, float(seconds))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--old", action="store_true")
    parser.add_argument(
        "--scripts-alone", type=int, metavar="CALLS", help="time the list script alone"
    )
    options = parser.parse_args()
    if options.scripts_alone:
        result = asyncio.run(scripts_alone(options.sessions, options.scripts_alone, options.old))
    else:
        result = asyncio.run(run(options.sessions, options.seconds, options.old))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
