"""Describe the device behind a request: browser, OS and an approximate place.

Browser and OS come from the User-Agent through ``ua-parser`` (a maintained port of
the uap-core regexes, with an optional Rust accelerator); the place is the client's IP
prefix (/24 for IPv4, /48 for IPv6) unless the app supplies a resolver (GeoIP, say).
The full address is never stored.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Final

import ua_parser

from .events import Device

__all__ = [
    "PlaceResolver",
    "client_address",
    "describe_device",
    "ip_prefix",
    "parse_user_agent",
    "warm_up",
]

PlaceResolver = Callable[[str], str]

logger = logging.getLogger(__name__)

_MAX_USER_AGENT: Final = 512  # longer strings are truncated before parsing (ReDoS-safe)


@functools.lru_cache(maxsize=1024)
def parse_user_agent(user_agent: str) -> tuple[str, str]:
    """``("Chrome 120", "Windows 10")`` for a User-Agent; unknown parts are "Unknown"."""
    result = ua_parser.parse(user_agent[:_MAX_USER_AGENT])
    browser = (
        _label(result.user_agent.family, result.user_agent.major) if result.user_agent else None
    )
    system = _label(result.os.family, result.os.major) if result.os else None
    return browser or "Unknown browser", system or "Unknown OS"


def _label(family: str | None, major: str | None) -> str | None:
    if not family or family == "Other":
        return None
    return f"{family} {major}" if major else family


# Every claim and sign-in describes its device: parsing the address was ~2 % of a
# worker's CPU per HTTP claim, and a deployment's clients repeat their addresses.
@functools.lru_cache(maxsize=4096)
def ip_prefix(address: str | None) -> str:
    """The network an address belongs to (/24, /48); "" when it is not an IP."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def client_address(
    remote_addr: str | None, forwarded_for: Sequence[str], *, trust_forwarded_for: bool
) -> str | None:
    """The client's IP: the peer's ``remote_addr``, or, when ``trust_forwarded_for`` is
    set (only behind a proxy you run), the last hop of ``X-Forwarded-For`` — every line
    of the header (``forwarded_for``, in order) read as one comma-separated list, as
    HTTP defines repeated fields: the hop the nearest proxy added is the last one
    whether it appended to a line or added a line of its own, so a line the client
    sent first never counts as its address."""
    if trust_forwarded_for:
        hops = [hop.strip() for line in forwarded_for for hop in line.split(",") if hop.strip()]
        if hops:
            return str(hops[-1])
    return str(remote_addr) if remote_addr else None


def describe_device(
    user_agent: str | None,
    address: str | None,
    at_ms: int,
    *,
    resolver: PlaceResolver | None = None,
) -> Device:
    """The :class:`Device` for a request's User-Agent and client address."""
    browser, system = parse_user_agent(user_agent or "")
    place = ip_prefix(address)
    if resolver is not None and address:
        try:
            place = resolver(address) or place
        except Exception:  # a broken resolver must not break logins: keep the prefix
            logger.warning("place resolver failed; using the IP prefix", exc_info=True)
    return Device(browser=browser, os=system, place=place, at=at_ms)


def warm_up() -> None:
    """Load the User-Agent regexes now, not during the first login (~0.15 s)."""
    parse_user_agent("Mozilla/5.0")
