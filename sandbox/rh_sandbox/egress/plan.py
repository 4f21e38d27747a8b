"""Where each grant appears inside the sandbox: a loopback address per host name, and the /etc files.

Host names get 127.0.0.2, 127.0.0.3, ... in grant order (skipping addresses a loopback literal grant
uses), so ``hooks.example.com:443`` becomes a listener on 127.0.0.2:443 and an /etc/hosts line.
Nothing else resolves: the generated nsswitch.conf says ``hosts: files`` and there is no resolv.conf.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rh_sandbox.egress.grants import Grant, GrantError

__all__ = ["GUEST_SOCKET", "GuestPlan", "plan_guest"]

GUEST_SOCKET = "/run/rh-egress/egress.sock"  # where the isolation layer binds the run's broker socket
NSSWITCH_TEXT = "hosts: files\n"


@dataclass(frozen=True)
class GuestPlan:
    """What the isolation layer puts into the sandbox for one run."""

    addresses: dict[str, str]  # host name (or literal) -> loopback address inside the sandbox
    hosts_text: str  # contents for /etc/hosts
    nsswitch_text: str  # contents for /etc/nsswitch.conf
    forwarder_config: dict[str, Any]  # JSON-able argument of guest.forwarder.start()


def plan_guest(grants: Sequence[Grant], guest_socket: str = GUEST_SOCKET) -> GuestPlan:
    literal = {g.host for g in grants if g.is_ip_literal}
    addresses: dict[str, str] = {host: host for host in literal}
    next_host = 2
    for grant in grants:
        if grant.host in addresses:
            continue
        while True:
            if next_host > 254 * 255:
                raise GrantError("too many granted host names for the loopback range")
            candidate = str(ipaddress.IPv4Address("127.0.0.0") + next_host)
            next_host += 1
            if candidate not in literal and not candidate.endswith((".0", ".255")):
                break
        addresses[grant.host] = candidate
    lines = [] if "localhost" in addresses else ["127.0.0.1\tlocalhost"]
    lines += [f"{addr}\t{host}" for host, addr in addresses.items() if host not in literal]
    listen = [{"address": addresses[g.host], "port": g.port, "grant": str(g)} for g in grants]
    return GuestPlan(
        addresses=addresses,
        hosts_text="\n".join(lines) + "\n",
        nsswitch_text=NSSWITCH_TEXT,
        forwarder_config={"socket": guest_socket, "listen": listen},
    )
