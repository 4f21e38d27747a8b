"""Secrets are redacted in the encodings a handler is likely to leak them in, wherever they appear."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import msgspec
import pytest

from rh_host.outcome import BatchOutcome, HandlerRun
from rh_host.service.recording import redact_result
from rh_host.service.redaction import REDACTED, redact_struct, redact_text, secret_forms
from rh_sandbox import RunResult
from rh_sdk.protocol import LogRecord, Reply, RunStatus

SECRET = "sk-live/Zé+9?&x=1"  # has characters every encoding treats differently


@pytest.mark.parametrize(
    "leaked",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],  # \u00e9 escapes
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        SECRET.encode().hex(),
        SECRET.encode().hex().upper(),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
        base64.b64encode(b"user:" + SECRET.encode()).decode(),  # HTTP Basic: the secret mid-text, offset 5
        base64.b64encode(b"ab:" + SECRET.encode() + b"!tail").decode(),  # offset 3, followed by more
        base64.b64encode(b"a:" + SECRET.encode()).decode(),  # offset 2
    ],
    ids=["plain", "json-ascii", "json", "url", "url-plus", "hex", "HEX", "b64", "b64url", "basic", "b64-mid", "b64-2"],
)
def test_every_common_encoding_is_redacted(leaked: str) -> None:
    text = redact_text(f"header {leaked} trailer", [SECRET])
    assert REDACTED in text and text.startswith("header ") and text.endswith(" trailer")
    # what is left cannot give the secret back: no run of 6 characters of any of its forms survives
    for form in secret_forms(SECRET):
        assert form not in text


def test_a_run_result_is_redacted_in_logs_errors_output_and_egress() -> None:
    encoded = base64.b64encode(f"bot:{SECRET}".encode()).decode()
    result = RunResult(
        status=RunStatus.FAILED,
        reply=Reply(ran=True, ok=False, output={"url": f"https://x.test/?key={quote(SECRET, safe='')}"}),
        error=f"401 for Authorization: Basic {encoded}",
        logs=[LogRecord(level="INFO", message=json.dumps({"token": SECRET}), extra={SECRET.encode().hex(): 1})],
        egress=[{"grant": "x.test:443", "note": SECRET}],
    )
    text = msgspec.json.encode(redact_result(result, [SECRET])).decode()
    assert text.count(REDACTED) == 5, text
    for form in secret_forms(SECRET):
        assert msgspec.json.encode(form).decode()[1:-1] not in text
    assert redact_result(result, ["absent-value"]) is result  # nothing to redact: not rebuilt


def test_short_values_and_ordinary_text_are_left_alone() -> None:
    assert redact_text("the cat sat", ["cat"]) == "the cat sat"  # under 4 characters: never redacted
    assert secret_forms("abc") == set()
    assert redact_text("c2VjcmV0 is base64 of 'secret'", ["hunter2-x"]) == "c2VjcmV0 is base64 of 'secret'"


def test_an_outcome_is_redacted_through_any_depth() -> None:
    nested: dict[str, object] = {"leaf": SECRET}
    for _ in range(900):  # about as deep as msgspec encodes; the walk itself is iterative
        nested = {"n": nested}
    run = HandlerRun(name="h", version="1", runtime="python", priority=1, status=RunStatus.OK, output={"d": nested})
    outcome = BatchOutcome(batch_id="b", success=True, result_count=0, handlers=[run], output={"d": nested})
    text = msgspec.json.encode(redact_struct(outcome, [SECRET]))
    assert SECRET.encode() not in text and text.count(REDACTED.encode()) == 2


def test_redaction_covers_logs_errors_and_output_even_json_escaped() -> None:
    secret = 'pa"ss\\word-123'
    result = RunResult(
        status=RunStatus.FAILED,
        reply=Reply(ran=True, ok=False, output={"echo": secret}),
        error=f"bad key {secret}",
        logs=[LogRecord(level="INFO", message=f"using {secret}", extra={"k": secret})],
    )
    text = msgspec.json.encode(redact_result(result, [secret, "abc"])).decode()
    assert "word-123" not in text and text.count("[redacted]") == 4
    untouched = redact_result(result, ["not-there"])
    assert untouched is result
