"""Network grants: what a plugin asks for (``host:port``) and what the operator lets plugins ask for.

A plugin's ``allowed_hosts`` lists exact ``host:port`` pairs, no wildcards: ``hooks.example.com:443``.
The operator's policy caps them with patterns (``*.example.com:443``, ``db.internal:*``) and, separately,
names the internal destinations (after resolution) that are nevertheless allowed (``127.0.0.1:*``):
by default the broker refuses every address that is not globally routable.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rh_sandbox.errors import GrantError

__all__ = [
    "Grant",
    "GrantError",
    "OperatorPolicy",
    "check_grants",
    "is_internal",
    "parse_grant",
    "parse_grants",
]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAX_GRANTS = 32


@dataclass(frozen=True, order=True)
class Grant:
    """One granted destination: a host name (or a loopback IP literal) and a TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_ip_literal(self) -> bool:
        return _ip(self.host) is not None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split(entry: str, *, what: str) -> tuple[str, str]:
    text = entry.strip()
    if text.startswith("["):  # [::1]:443
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise GrantError(f"{what} {entry!r}: expected [ipv6]:port")
        return host, rest[1:]
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise GrantError(f"{what} {entry!r}: expected host:port (the port is required)")
    if ":" in host:
        raise GrantError(f"{what} {entry!r}: write IPv6 addresses as [addr]:port")
    return host, port


def _port(text: str, entry: str, *, what: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise GrantError(f"{what} {entry!r}: port must be a number from 1 to 65535")
    return int(text)


def _hostname(text: str, entry: str, *, what: str, wildcard: bool = False) -> str:
    host = text.lower().rstrip(".")
    if wildcard and host == "*":
        return host
    labels = host.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    if not labels or len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise GrantError(f"{what} {entry!r}: {text!r} is not a valid host name")
    return host


def parse_grant(entry: str) -> Grant:
    """``host:port`` to a Grant. IP literals are allowed only on loopback (the sandbox has no route)."""
    if not isinstance(entry, str):
        raise GrantError(f"allowed_hosts entry {entry!r}: must be a string host:port")
    host, port_text = _split(entry, what="allowed_hosts entry")
    port = _port(port_text, entry, what="allowed_hosts entry")
    address = _ip(host)
    if address is not None:
        if not address.is_loopback or address.version != 4:
            raise GrantError(
                f"allowed_hosts entry {entry!r}: an IP literal other than 127.x.x.x cannot be reached from the "
                "sandbox; grant a host name instead"
            )
        return Grant(str(address), port)
    if "*" in host:
        raise GrantError(f"allowed_hosts entry {entry!r}: wildcards are for the operator's policy, not grants")
    return Grant(_hostname(host, entry, what="allowed_hosts entry"), port)


def parse_grants(entries: Iterable[str]) -> list[Grant]:
    """Validate a plugin's ``allowed_hosts``; the first bad entry is named in the error. Duplicates merge."""
    if isinstance(entries, str):
        raise GrantError("allowed_hosts must be a list of host:port strings, not one string")
    grants: list[Grant] = []
    for entry in entries:
        grant = parse_grant(entry)
        if grant not in grants:
            grants.append(grant)
    if len(grants) > _MAX_GRANTS:
        raise GrantError(f"allowed_hosts: at most {_MAX_GRANTS} host:port pairs, got {len(grants)}")
    return grants


@dataclass(frozen=True)
class _Pattern:
    host: str  # exact, "*.suffix" or "*"
    port: int | None  # None = any

    @classmethod
    def parse(cls, entry: str, *, what: str) -> _Pattern:
        host, port_text = _split(entry, what=what)
        port = None if port_text == "*" else _port(port_text, entry, what=what)
        address = _ip(host)
        if address is not None:
            return cls(str(address), port)
        return cls(_hostname(host, entry, what=what, wildcard=True), port)

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and fnmatch.fnmatchcase(host, self.host)
        return host == self.host


@dataclass(frozen=True)
class OperatorPolicy:
    """The operator's cap on grants and the internal destinations it allows.

    ``allowed``: patterns a plugin's grant must match (``*.example.com:443``, ``db.internal:*``, ``*:443``).
    ``internal_allowed``: resolved ``address:port`` patterns the broker may connect to although they are
    private, loopback, link-local or reserved (``127.0.0.1:*``, ``10.0.0.5:5432``). Empty by default.
    """

    allowed: tuple[str, ...] = ()
    internal_allowed: tuple[str, ...] = ()
    _allowed: tuple[_Pattern, ...] = field(init=False, repr=False, compare=False)
    _internal: tuple[_Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        allowed = tuple(_Pattern.parse(e, what="operator allowed_hosts entry") for e in self.allowed)
        internal = tuple(_Pattern.parse(e, what="operator internal_allowed entry") for e in self.internal_allowed)
        for pattern in internal:
            if _ip(pattern.host) is None:
                raise GrantError(f"operator internal_allowed entry {pattern.host!r}: must be an IP address")
        object.__setattr__(self, "_allowed", allowed)
        object.__setattr__(self, "_internal", internal)

    def permits(self, grant: Grant) -> bool:
        return any(p.matches(grant.host, grant.port) for p in self._allowed)

    def permits_internal(self, address: str, port: int) -> bool:
        return any(p.matches(address, port) for p in self._internal)


def check_grants(grants: Sequence[Grant], policy: OperatorPolicy) -> list[Grant]:
    """Return the grants if the policy permits every one; else name every refused entry."""
    refused = [str(g) for g in grants if not policy.permits(g)]
    if refused:
        raise GrantError(f"not permitted by the operator's allow-list: {', '.join(refused)}")
    return list(grants)


def is_internal(address: str) -> bool:
    """True for any address that is not plainly public unicast (private, loopback, link-local, CGNAT...)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_internal(str(ip.ipv4_mapped))
        if ip.sixtofour is not None or ip.teredo is not None:
            return True  # tunnels to IPv4 hosts we cannot vet
        if ip.is_site_local:  # fec0::/10: deprecated, yet still routed inside some sites; ipaddress calls it global
            return True
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified
