"""The SSRF guard: may this process open a connection to this URL?

Rules, applied to every URL a user or a model can influence (and to every redirect hop):

* scheme must be ``http`` or ``https``; no credentials in the URL; a host is required;
* numeric hosts must be canonical dotted-quad IPv4 or bracketed IPv6 — the ambiguous forms that
  ``inet_aton`` accepts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``) are refused outright;
* the host is resolved and *every* resolved address must be public: loopback, private, link-local,
  multicast, reserved, unspecified, shared (CGNAT), IPv4-mapped/compatible/6to4/Teredo/NAT64
  addresses that embed a non-public IPv4, are all refused;
* the caller connects to the address that was checked (see ``backend.net.http``), so a DNS answer
  that changes between check and connect (DNS rebinding) cannot redirect the connection.

``allow_hosts`` (``settings.ssrf_allow_hosts``) names hosts that may resolve to non-public
addresses — meant for tests that replay recordings from a server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# Hostnames that are made only of digits, hex digits, "x" and dots are numeric in inet_aton's eyes.
_NUMERIC_LIKE = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$", re.IGNORECASE)


class SSRFError(ValueError):
    """The URL is not allowed as an outbound target. The message is safe to show to users."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect, and what to call the server (Host header / SNI)."""

    url: str
    scheme: str
    host: str  # as written in the URL, lower-case, without brackets
    port: int
    addresses: tuple[str, ...]  # checked IPs, in resolver order; connect to these only
    allow_listed: bool = False


def _normalise_allow(allow_hosts: Iterable[str] | None) -> set[str]:
    return {h.strip().lower().strip("[]") for h in (allow_hosts or ()) if h and h.strip()}


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # IPv4-compatible (deprecated) ::a.b.c.d
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why this address must not be contacted, or None if it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = blocked_reason(embedded)
            if inner:
                return f"IPv6 address embedding a {inner} IPv4 address"
            if ip.ipv4_mapped is not None:
                return None
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    )
    for name, hit in checks:
        if hit:
            return name
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if not ip.is_global:
        return "non-public"
    return None


def _parse_ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def parse_url(url: str) -> tuple[str, str, int]:
    """Validate the URL's shape; return (scheme, host, port). Resolution happens separately."""
    if not isinstance(url, str) or not url.strip():
        raise SSRFError("URL is empty")
    if len(url) > 4096:
        raise SSRFError("URL is too long")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url.strip()):
        raise SSRFError("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise SSRFError(f"malformed URL: {exc}") from None
    scheme = (parts.scheme or "").lower()
    if scheme not in ALLOWED_SCHEMES:
        raise SSRFError(f"scheme {scheme or '(none)'!r} is not allowed; use http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise SSRFError("credentials in URLs are not allowed")
    host = (parts.hostname or "").lower()
    if not host:
        raise SSRFError("URL has no host")
    host = host.removesuffix(".")
    if "%" in host:
        raise SSRFError("scoped IPv6 addresses are not allowed")
    literal = _parse_ip_literal(host)
    if literal is None:
        if _NUMERIC_LIKE.match(host) and not re.search(r"[g-wyz]", host):
            # e.g. 2130706433, 0x7f.1, 0177.0.0.1, 127.1 — resolvers read these as IP addresses
            labels = host.split(".")
            if all(re.fullmatch(r"(0x[0-9a-f]*|[0-9]+)", lab or "x", re.IGNORECASE) for lab in labels):
                raise SSRFError(f"ambiguous numeric host {host!r} is not allowed; write the address in dotted form")
        labels = host.split(".")
        if not all(_HOST_LABEL.match(lab) for lab in labels):
            try:
                host.encode("idna")
            except UnicodeError:
                raise SSRFError(f"invalid host name {host!r}") from None
            if not all(lab for lab in labels):
                raise SSRFError(f"invalid host name {host!r}")
    return scheme, host, port or _DEFAULT_PORTS[scheme]


def check_addresses(host: str, addresses: Iterable[str], allow_listed: bool) -> tuple[str, ...]:
    """Refuse if any resolved address is non-public (unless the host is allow-listed)."""
    ordered: list[str] = []
    for raw in addresses:
        ip = ipaddress.ip_address(raw.split("%", 1)[0])
        if not allow_listed:
            reason = blocked_reason(ip)
            if reason:
                raise SSRFError(f"host {host!r} resolves to a {reason} address ({ip}); refusing to connect")
        text = str(ip)
        if text not in ordered:
            ordered.append(text)
    if not ordered:
        raise SSRFError(f"host {host!r} did not resolve to any address")
    return tuple(ordered)


def _addresses_from_getaddrinfo(infos: Sequence[tuple[Any, ...]]) -> list[str]:
    """The IPv4/IPv6 address texts of ``getaddrinfo`` entries (``(family, type, proto, name, sockaddr)``)."""
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


def check_url(url: str, allow_hosts: Iterable[str] | None = None) -> Target:
    """Blocking variant (resolves with ``socket.getaddrinfo``) for code running in a worker thread."""
    scheme, host, port = parse_url(url)
    allowed = host in _normalise_allow(allow_hosts)
    literal = _parse_ip_literal(host)
    if literal is not None:
        addresses = check_addresses(host, [str(literal)], allowed)
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise SSRFError(f"could not resolve host {host!r}: {exc.strerror}") from None
        addresses = check_addresses(host, _addresses_from_getaddrinfo(infos), allowed)
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=addresses, allow_listed=allowed)


async def check_url_async(url: str, allow_hosts: Iterable[str] | None = None, timeout_s: float = 10.0) -> Target:
    """Async variant: resolves on the event loop's resolver thread pool, with a time limit."""
    scheme, host, port = parse_url(url)
    allowed = host in _normalise_allow(allow_hosts)
    literal = _parse_ip_literal(host)
    if literal is not None:
        addresses = check_addresses(host, [str(literal)], allowed)
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s)
        except TimeoutError:
            raise SSRFError(f"resolving host {host!r} timed out") from None
        except socket.gaierror as exc:
            raise SSRFError(f"could not resolve host {host!r}: {exc.strerror}") from None
        addresses = check_addresses(host, _addresses_from_getaddrinfo(infos), allowed)
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=addresses, allow_listed=allowed)
