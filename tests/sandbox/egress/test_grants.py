"""Grant parsing, the operator's cap, the internal-address rule and the guest plan."""

from __future__ import annotations

import pytest

from rh_sandbox.egress import GrantError, OperatorPolicy, check_grants, is_internal, parse_grants, plan_guest
from rh_sandbox.egress.grants import Grant


def test_parse_normalises_and_merges_duplicates() -> None:
    grants = parse_grants(["Hooks.Example.com.:443", "hooks.example.com:443", "db.internal:5432", "127.0.0.1:8080"])
    assert grants == [Grant("hooks.example.com", 443), Grant("db.internal", 5432), Grant("127.0.0.1", 8080)]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("hooks.example.com", "port is required"),
        ("hooks.example.com:0", "port must be a number"),
        ("hooks.example.com:https", "port must be a number"),
        ("*.example.com:443", "wildcards are for the operator"),
        ("10.0.0.5:5432", "IP literal other than 127"),
        ("[::1]:80", "IP literal other than 127"),
        ("bad_host!:80", "not a valid host name"),
        ("::1:80", "write IPv6 addresses as [addr]:port"),
    ],
)
def test_bad_entries_are_named(entry: str, message: str) -> None:
    with pytest.raises(GrantError) as info:
        parse_grants(["ok.example.com:443", entry])
    assert repr(entry) in str(info.value)
    assert message in str(info.value)


def test_a_single_string_is_refused() -> None:
    with pytest.raises(GrantError, match="list"):
        parse_grants("hooks.example.com:443")  # type: ignore[arg-type]


def test_operator_cap_names_every_refused_grant() -> None:
    policy = OperatorPolicy(allowed=("*.example.com:443", "db.internal:*", "127.0.0.1:*"))
    ok = parse_grants(["hooks.example.com:443", "db.internal:6432", "127.0.0.1:9"])
    assert check_grants(ok, policy) == ok
    bad = parse_grants(["example.com:443", "hooks.example.com:80", "db.internal:5432", "evil.com:443"])
    with pytest.raises(GrantError) as info:
        check_grants(bad, policy)
    assert "example.com:443, hooks.example.com:80, evil.com:443" in str(info.value)
    assert "db.internal" not in str(info.value)


def test_policy_entries_are_validated() -> None:
    with pytest.raises(GrantError, match="operator allowed_hosts entry"):
        OperatorPolicy(allowed=("no-port",))
    with pytest.raises(GrantError, match="must be an IP address"):
        OperatorPolicy(internal_allowed=("db.internal:5432",))


@pytest.mark.parametrize(
    ("address", "internal"),
    [
        ("127.0.0.1", True), ("10.1.2.3", True), ("192.168.0.1", True), ("172.16.0.1", True),
        ("169.254.169.254", True), ("100.64.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True),
        ("240.0.0.1", True), ("::1", True), ("fe80::1", True), ("fc00::1", True), ("::ffff:10.0.0.1", True),
        ("2002:a00:1::", True), ("93.184.216.34", False), ("2606:2800:220:1::1", False),
        ("::ffff:93.184.216.34", False), ("fec0::1", True), ("feff:ffff::1", True),
    ],
)  # fmt: skip
def test_is_internal(address: str, internal: bool) -> None:
    assert is_internal(address) is internal


def test_internal_allowance_is_per_address_and_port() -> None:
    policy = OperatorPolicy(internal_allowed=("127.0.0.1:5432", "10.0.0.5:*"))
    assert policy.permits_internal("127.0.0.1", 5432)
    assert not policy.permits_internal("127.0.0.1", 22)
    assert policy.permits_internal("10.0.0.5", 1)
    assert not policy.permits_internal("10.0.0.6", 1)


def test_plan_gives_each_name_its_own_loopback_address() -> None:
    plan = plan_guest(parse_grants(["a.example:443", "127.0.0.2:80", "b.example:5432", "a.example:80"]))
    assert plan.addresses == {"127.0.0.2": "127.0.0.2", "a.example": "127.0.0.3", "b.example": "127.0.0.4"}
    assert plan.hosts_text == "127.0.0.1\tlocalhost\n127.0.0.3\ta.example\n127.0.0.4\tb.example\n"
    assert plan.nsswitch_text == "hosts: files\n"
    listen = {(item["address"], item["port"]): item["grant"] for item in plan.forwarder_config["listen"]}
    assert listen == {
        ("127.0.0.3", 443): "a.example:443",
        ("127.0.0.2", 80): "127.0.0.2:80",
        ("127.0.0.4", 5432): "b.example:5432",
        ("127.0.0.3", 80): "a.example:80",
    }


def test_guest_forwarder_is_stdlib_only(repo_root) -> None:
    import ast
    import sys

    source = (repo_root / "sandbox/rh_sandbox/guest/forwarder.py").read_text()
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert modules - {"__future__"} <= set(sys.stdlib_module_names)
