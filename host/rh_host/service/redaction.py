"""Redacting secret values from everything the service stores or shows about a run.

A handler that leaks a secret rarely prints it bare: it logs a JSON document (escaped), a URL
(percent-encoded), a header (base64, often inside a longer base64 text such as an HTTP Basic
credential) or a digest-like hex dump. Each secret is therefore searched for in all of these forms.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import msgspec

__all__ = ["MIN_SECRET_CHARS", "REDACTED", "redact_struct", "redact_text", "secret_forms"]

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 4  # shorter values would redact ordinary words
_MIN_DERIVED_CHARS = 6  # a shorter fragment of an encoding matches too much unrelated text

T = TypeVar("T")


def _base64_forms(raw: bytes) -> Iterable[str]:
    """The characters of a base64 text that encode ``raw`` alone, at each of the three byte offsets it
    may start at inside a longer encoded text (the characters mixed with neighbouring bytes are left out)."""
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            text = encode(bytes(offset) + raw).decode("ascii")
            first = -(-offset * 8 // 6)  # the first character made only of the secret's bits
            end = (offset + len(raw)) * 8 // 6  # characters from here on mix in the bytes that follow
            yield text[first:end]


def secret_forms(value: str) -> set[str]:
    """``value`` as it may appear in text: as is, JSON-escaped, URL-encoded, hex and base64."""
    if len(value) < MIN_SECRET_CHARS:
        return set()
    raw = value.encode("utf-8")
    derived = {
        json.dumps(value)[1:-1],  # ASCII-only escapes (\u00e9)
        msgspec.json.encode(value).decode("utf-8")[1:-1],  # minimal escapes (\" and \\)
        quote(value, safe=""),
        quote_plus(value, safe=""),
        raw.hex(),
        raw.hex().upper(),
        *_base64_forms(raw),
    }
    return {value} | {form for form in derived if len(form) >= _MIN_DERIVED_CHARS}


def _all_forms(secret_values: Iterable[str]) -> list[str]:
    forms: set[str] = set()
    for value in secret_values:
        forms |= secret_forms(value)
    return sorted(forms, key=len, reverse=True)  # a longer form first: it may contain a shorter one


def _replace(text: str, forms: list[str]) -> str:
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def redact_text(text: str, secret_values: Iterable[str]) -> str:
    """Replace every form of every secret value in ``text`` with ``[redacted]``."""
    return _replace(text, _all_forms(secret_values))


def _redact_tree(root: Any, forms: list[str]) -> Any:
    """Every string in a tree of JSON values (dict keys too), redacted; iterative, so depth is no risk."""
    holder = [root]
    stack: list[tuple[Any, Any]] = [(holder, 0)]
    while stack:
        container, key = stack.pop()
        value = container[key]
        if isinstance(value, str):
            container[key] = _replace(value, forms)
        elif isinstance(value, list):
            stack.extend((value, index) for index in range(len(value)))
        elif isinstance(value, dict):
            redacted = {(_replace(k, forms) if isinstance(k, str) else k): v for k, v in value.items()}
            container[key] = redacted
            stack.extend((redacted, k) for k in redacted)
    return holder[0]


def redact_struct(value: T, secret_values: Iterable[str]) -> T:
    """``value`` (a msgspec Struct) with every form of every secret replaced in all of its strings.

    A cheap search of its JSON comes first: only a value that holds a secret is rebuilt."""
    forms = _all_forms(secret_values)
    if not forms:
        return value
    text = msgspec.json.encode(value)
    if not any(msgspec.json.encode(form)[1:-1] in text for form in forms):
        return value
    return msgspec.convert(_redact_tree(msgspec.json.decode(text), forms), type(value))
