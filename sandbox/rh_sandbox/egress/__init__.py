"""Egress mediation: a sandboxed plugin reaches exactly its granted ``host:port`` pairs, through the host.

The sandbox's network namespace has only ``lo``. The guest forwarder (:mod:`rh_sandbox.guest.forwarder`, stdlib
only) listens on 127.0.0.N:port per grant and relays each connection over a unix socket to the run's
:class:`EgressBroker`, which checks the grant, resolves the name, refuses internal addresses the
operator did not allow, connects, splices under caps and records the connection.
See docs/network-grants.md for the wiring and the threat model.
"""

from rh_sandbox.egress.broker import ConnectionRecord, EgressBroker, EgressCaps, EgressSetup, Resolver, system_resolver
from rh_sandbox.egress.grants import (
    Grant,
    GrantError,
    OperatorPolicy,
    check_grants,
    is_internal,
    parse_grant,
    parse_grants,
)
from rh_sandbox.egress.plan import GUEST_SOCKET, GuestPlan, plan_guest
from rh_sandbox.egress.run import EgressSettings, RunEgress

__all__ = [
    "GUEST_SOCKET",
    "ConnectionRecord",
    "EgressBroker",
    "EgressCaps",
    "EgressSettings",
    "EgressSetup",
    "Grant",
    "GrantError",
    "GuestPlan",
    "OperatorPolicy",
    "Resolver",
    "RunEgress",
    "check_grants",
    "is_internal",
    "parse_grant",
    "parse_grants",
    "plan_guest",
    "system_resolver",
]
