"""HTTP to addresses that outsiders name, refused when they point inside (SSRF).

Video URLs come from Kling's callbacks and clients' `callback_url`s from clients: their hosts are
untrusted. `guarded_client` connects through a network backend that resolves the host itself and
connects only to addresses it has checked, so the address checked is the one connected to; a name
re-resolving to an internal address (DNS rebinding) gains nothing. `refusal_of_url` applies the same
rule to what a URL shows without any lookup (an address, `localhost`), so a request naming such a
host is refused when it is made, not when its first delivery fails. How such a URL may be shown is
redaction.py's business.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from typing import Any

import httpcore
import httpx

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """Raised from the network backend; not an httpcore error, so httpx lets it through unchanged."""


def refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why connecting to `ip` is refused, or None; IPv6 forms embedding an IPv4 address are judged by it."""
    if ip.version == 6:
        nat64 = ip in _NAT64 and ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded := ip.ipv4_mapped or ip.sixtofour or nat64:
            return refusal(embedded)
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "not globally routable"


def refusal_of_url(url: str, allowed_hosts: frozenset[str]) -> str | None:
    """Why a connection to `url`'s host would be refused, when the URL alone tells; None otherwise.

    Names other than localhost are judged when connecting (resolving them now proves nothing then).
    Numeric hosts are read as the resolver reads them, old forms such as `2130706433` included.
    """
    try:
        host = httpx.URL(url).host.lower().rstrip(".")  # as the client will read it
    except httpx.InvalidURL:
        return None  # the client will refuse it as such
    if not host or host in allowed_hosts:
        return None
    if host == "localhost" or host.endswith(".localhost"):  # always loopback (RFC 6761)
        return "loopback"
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None  # a name
    ip = ipaddress.ip_address(infos[0][4][0])
    return None if str(ip) in allowed_hosts else refusal(ip)


class _GuardedBackend(httpcore.SyncBackend):
    def __init__(self, allowed_hosts: frozenset[str]) -> None:
        self._allowed = {host.lower().rstrip(".") for host in allowed_hosts}

    def _refusal(self, host: str, address: str) -> str | None:
        ip = ipaddress.ip_address(address)
        return None if {host.lower().rstrip("."), address, str(ip)} & self._allowed else refusal(ip)

    def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refused = {address: why for address in addresses if (why := self._refusal(host, address))}
        usable = [address for address in addresses if address not in refused]
        if not usable:
            reasons = ", ".join(f"{address} ({why})" for address, why in refused.items())
            raise BlockedAddress(f"refusing to connect to {host}: it resolves to {reasons}")
        for address in usable[:-1]:
            try:
                return super().connect_tcp(address, port, *args, **kwargs)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # try the next address, as socket.create_connection would
        return super().connect_tcp(usable[-1], port, *args, **kwargs)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings of every outbound client this process makes, built once: httpx otherwise builds
    a context, loading the whole CA bundle, for each client, which cost a delivery or a download more
    CPU than its request once a worker ran jobs without forking. A context only holds settings; each
    connection has its own TLS state, so clients in several threads can share it."""
    return httpx.create_ssl_context(trust_env=False)


def guarded_client(
    allowed_hosts: frozenset[str], timeout: httpx.Timeout, headers: dict[str, str] | None = None
) -> httpx.Client:
    """An httpx client that connects only to public addresses and hosts in `allowed_hosts`; it follows
    no redirects (a caller that does must send each hop through it again)."""
    transport = httpx.HTTPTransport(verify=tls_context(), trust_env=False)
    # HTTPTransport takes no network backend, but it maps httpcore errors to httpx ones and wraps the
    # response stream, which a transport of our own would have to copy; so swap the backend of its pool
    # (still empty: connections take the backend when created), failing loudly if that attribute moves.
    pool = transport._pool
    if not isinstance(getattr(pool, "_network_backend", None), httpcore.SyncBackend):
        raise RuntimeError("httpcore changed: cannot install the address-checking network backend")
    pool._network_backend = _GuardedBackend(allowed_hosts)
    return httpx.Client(
        transport=transport, trust_env=False, follow_redirects=False, timeout=timeout, headers=headers
    )
