"""The any-stack flow through real Caddy (Debian's ``caddy``, ``forward_auth``): the proxy
demo with ``proxy="caddy"`` — the Caddyfile docs/any-stack.md explains, ``sessionwatch
serve`` (Redis, 2 workers) as ``SESSIONWATCH_FORWARD_AUTH=caddy`` — in front of the same
unchanged Flask and Express apps as nginx (tests/integration/test_proxy_demo.py)."""

from __future__ import annotations

import ipaddress
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.test_proxy_demo import Browser
from sessionwatch.demo.proxy import ProxyDemo
from support.proxy import demo_command, require_caddy, require_express
from support.redis_server import free_port

pytestmark = pytest.mark.multiprocess


@pytest.fixture(scope="module", name="demo")
def _demo(redis_url: str) -> Iterator[ProxyDemo]:
    require_caddy()
    require_express()
    prefix = f"caddy:{uuid.uuid4().hex[:8]}:"
    with ProxyDemo(
        backend=redis_url, workers=2, proxy="caddy", env={"SESSIONWATCH_KEY_PREFIX": prefix}
    ) as demo:
        yield demo


@pytest.mark.parametrize("site", ["flask", "express"])
def test_stale_tabs_get_409_and_anonymous_401_through_caddy(demo: ProxyDemo, site: str) -> None:
    browser = Browser(demo.urls[site])
    status, headers, _ = browser.request("GET", "/")
    assert status == 302 and headers["Location"].endswith("/login")
    status, body = Browser(demo.urls[site]).transfer(None)  # no session at all
    assert status == 401 and body["error"] == "no_session"
    browser.sign_in("alice")
    status, _, page = browser.request("GET", "/")
    assert status == 200 and b"alice" in page
    status, _, script = browser.request("GET", "/_sessionwatch/client.js")
    assert status == 200 and b"sessionwatch" in script
    older = browser.claim()
    assert browser.transfer(older)[0] == 200
    newer = browser.claim()
    status, body = browser.transfer(older)  # Caddy passes the refusal on as it is
    assert status == 409 and body["error"] == "tab_superseded" and body["by"]["at"] > 0
    assert browser.transfer(newer)[0] == 200
    status, body = browser.transfer(newer, Origin="https://evil.example")
    assert status == 403 and body["error"] == "origin_forbidden"
    # logout needs a session; afterwards the old cookie is refused
    stolen = dict(browser.cookies)
    status, headers, _ = browser.request("POST", "/logout")
    assert status in (302, 303) and headers["Location"].endswith("/login")
    replay = Browser(demo.urls[site])
    replay.cookies = stolen
    status, body = replay.transfer(newer)
    assert status == 401 and body["error"] == "no_session"


def test_forged_original_request_headers_from_the_client_are_ignored(demo: ProxyDemo) -> None:
    """A client's own X-Original-Method/-URI (nginx's names; Caddy passes them on unless
    stripped) or X-Forwarded-Method cannot make a stale or missing tab pass as a GET."""
    browser = Browser(demo.urls["flask"])
    browser.sign_in("mallory")
    older = browser.claim()
    browser.claim()
    forged = {"X_Original_Method": "GET", "X_Original_URI": "/", "X_Forwarded_Method": "GET"}
    status, body = browser.transfer(older, **forged)
    assert status == 409 and body["error"] == "tab_superseded"
    status, body = browser.transfer(None, **forged)
    assert status == 409 and body["error"] == "tab_missing"
    status, body = Browser(demo.urls["flask"]).transfer(None, **forged)
    assert status == 401 and body["error"] == "no_session"
    # nor can it say who it is
    anonymous = Browser(demo.urls["flask"])
    status, _, _ = anonymous.request("GET", "/", X_SessionWatch_User="alice")
    assert status == 302


def test_the_session_api_is_not_reachable_through_caddy(demo: ProxyDemo) -> None:
    status, _, _ = Browser(demo.urls["flask"]).request(
        "GET", "/_sessionwatch/api/v1/sessions?user=alice", Authorization=f"Bearer {demo.api_key}"
    )
    assert status == 404


def _remote_addresses(pid: int) -> set[str]:
    """The peer addresses of every TCP/UDP socket process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    peers = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                peers.add(fields[2].split(":")[0])
    return peers


def _is_loopback_or_none(hex_address: str) -> bool:
    raw = bytes.fromhex(hex_address)
    # /proc/net stores each 32-bit word in host (little-endian) order
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def test_caddy_talks_to_nothing_but_loopback(demo: ProxyDemo) -> None:
    """No ACME, no admin endpoint, no update check: after the flow above, every socket
    Caddy holds is a loopback one (or a listener)."""
    Browser(demo.urls["flask"]).request("GET", "/login")  # at least one live connection
    caddy = dict(demo.processes)["caddy"]
    peers = _remote_addresses(caddy.pid)
    assert peers, "caddy holds no socket?"
    assert all(_is_loopback_or_none(peer) for peer in peers), peers


def test_one_command_starts_the_demo_with_caddy() -> None:
    require_caddy()
    port = free_port()
    with demo_command("--proxy", "caddy", "--no-express", "--port", str(port)) as lines:
        assert any("caddy config and logs" in line for line in lines), lines
        assert Browser(f"http://127.0.0.1:{port}").request("GET", "/login")[0] == 200
