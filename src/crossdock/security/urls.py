"""Outbound URL checks: no calls to loopback, private, link-local or otherwise internal addresses unless the
operator allows them (CROSSDOCK_ALLOW_PRIVATE_URLS=1), so a connection or webhook URL cannot reach into
the network crossdock runs in."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit


class UnsafeURL(ValueError):
    pass


def _is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one (mapped ::ffff:a.b.c.d, 6to4 2002::/16, Teredo 2001::/32)
        # reaches that IPv4 address: it is as internal as what it carries.
        carried = [address.sixtofour, *(address.teredo or ())]
        if any(_is_internal(a) for a in carried if a is not None):
            return True
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        # Not routed on the internet, yet neither "private" to ipaddress: 100.64.0.0/10, the carrier-grade NAT
        # range (RFC 6598), where some clouds answer instance metadata (100.100.100.200).
        or not address.is_global
    )


def check_url_syntax(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeURL(f"'{url}' must start with https:// (or http://)")
    if not parts.hostname:
        raise UnsafeURL(f"'{url}' has no host name")
    if parts.username or parts.password:
        raise UnsafeURL("put credentials in the connection's secrets, not in the URL")
    return url


def check_outbound_url(url: str, *, allow_private: bool, resolve: bool = True) -> str:
    """Refuse URLs whose host is, or resolves to, an internal address. Returns the URL unchanged."""
    check_url_syntax(url)
    if allow_private:
        return url
    host = urlsplit(url).hostname or ""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        name = host.rstrip(".")  # "localhost." is the same name as "localhost"
        if name == "localhost" or name.endswith((".localhost", ".local", ".internal")):
            raise UnsafeURL(
                f"'{host}' is an internal host name; set CROSSDOCK_ALLOW_PRIVATE_URLS=1 to allow it"
            ) from None
        if not resolve:
            return url
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise UnsafeURL(f"host '{host}' does not resolve; check the URL") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if _is_internal(address):
            raise UnsafeURL(
                f"'{host}' resolves to the internal address {address}; "
                "set CROSSDOCK_ALLOW_PRIVATE_URLS=1 if this hub may call it"
            )
    return url


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to (blocking: call it from a thread in async code)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UnsafeURL(f"host '{host}' does not resolve; check the URL") from None
    return [str(info[4][0]) for info in infos]


def pin_outbound_url(
    url: str, *, allow_private: bool, resolver: Callable[[str], list[str]] = resolve_host
) -> tuple[str, str | None]:
    """Check `url` as check_outbound_url does and return (URL to connect to, host name it stands for).

    When the host is a name, the returned URL carries one of the checked addresses instead, so the connection
    goes exactly where the check looked: a DNS answer that changes between the check and the connect (DNS
    rebinding) cannot send the request inside. The caller sends the name as Host and as TLS SNI, so virtual
    hosting and certificate checks work as usual. (None: the URL is used as it is.)
    """
    check_url_syntax(url)
    if allow_private:
        return url, None
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return check_outbound_url(url, allow_private=False), None
    check_outbound_url(url, allow_private=False, resolve=False)  # internal names (localhost, *.internal)
    addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolver(host)]
    if not addresses:
        raise UnsafeURL(f"host '{host}' does not resolve; check the URL")
    for address in addresses:
        if _is_internal(address):
            raise UnsafeURL(
                f"'{host}' resolves to the internal address {address}; "
                "set CROSSDOCK_ALLOW_PRIVATE_URLS=1 if this hub may call it"
            )
    chosen = addresses[0]
    literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = literal + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl(), host
