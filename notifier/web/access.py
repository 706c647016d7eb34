"""Where a request comes from: the client's address behind trusted proxies, and who may call.

The address is the peer's, unless the peer is one of ``NOTIFIER_TRUSTED_PROXIES``: then
``X-Forwarded-For`` is read from the right (see :func:`client_address`). It decides
``NOTIFIER_API_ALLOWED_IPS`` (:class:`Access`) and what failed authentications count by
(:func:`throttle_key`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str | None) -> IpAddress | None:
    """An address as a peer or an ``X-Forwarded-For`` hop gives it; None when it is not one.

    IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``, from dual-stack sockets) become IPv4, so
    that IPv4 CIDRs match them. A port (``10.0.0.1:5000``, ``[::1]:5000``) is dropped.
    """
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def throttle_key(address: IpAddress | None) -> str:
    """What failed authentications are counted by: the address, or its /64 for IPv6.

    One IPv6 host usually holds a whole /64 and can pick a fresh address for every request,
    so counting single IPv6 addresses would throttle nobody.
    """
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _within(address: IpAddress, networks: Sequence[IpNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IpNetwork]
) -> IpAddress | None:
    """The client's address: the peer, unless the peer is a trusted proxy.

    Through trusted proxies, ``X-Forwarded-For`` is read from the right (the hop the nearest
    proxy added) and the first address that is not itself a trusted proxy is the client. Hops
    to the left of it were written by whoever called that proxy and are not believed.
    """
    address = parse_address(peer)
    if address is None:
        return None
    hops = [hop for hop in (forwarded_for or "").split(",") if hop.strip()]
    while hops and _within(address, trusted):
        hop = parse_address(hops.pop())
        if hop is None:  # a garbled hop: the last proxy we trust is all we know
            break
        address = hop
    return address


@dataclass(frozen=True, slots=True)
class Access:
    """The access rules of the API, from the settings."""

    allowed: tuple[IpNetwork, ...]
    trusted_proxies: tuple[IpNetwork, ...]
    bootstrap_token: str | None

    def allows(self, address: IpAddress | None) -> bool:
        """Whether *address* may use the API; an unknown one only when every address may."""
        if address is None:
            return any(net.prefixlen == 0 for net in self.allowed)
        return _within(address, self.allowed)
