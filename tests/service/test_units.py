"""Unit tests of the service's pure parts: clamping, redaction, sealing, archive names (intake: test_intake)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import msgspec
import pytest

from rh_host.service.archives import unpack_archive
from rh_host.service.errors import ServiceError, UploadRejected
from rh_host.service.limits import clamp_limits
from rh_host.service.recording import redact_result
from rh_host.service.settings import Quotas, UploadCaps
from rh_host.service.vault import Vault
from rh_sandbox import Limits, RunResult
from rh_sdk.protocol import LogRecord, Reply, RunStatus


def test_clamp_lowers_only_what_exceeds_the_ceiling() -> None:
    clamped = clamp_limits(Limits(cpu_seconds=100, memory_mb=64, max_processes=500), Quotas(cpu_seconds=5))
    assert clamped.effective.cpu_seconds == 5 and clamped.effective.memory_mb == 64
    assert clamped.effective.max_processes == Quotas().max_processes  # the default ceiling
    assert clamped.clamped == ["cpu_seconds", "max_processes"]
    assert clamp_limits(Limits(), Quotas()).clamped == []


@pytest.mark.parametrize("field", Limits.__struct_fields__)
def test_every_limit_is_clamped_by_its_quota_and_no_other(field: str) -> None:
    asked = {name: getattr(Limits(), name) * 1000 for name in Limits.__struct_fields__}  # far above every ceiling
    ceiling = getattr(Quotas(), field) / 2
    clamped = clamp_limits(Limits(**asked), msgspec.structs.replace(Quotas(), **{field: type(asked[field])(ceiling)}))
    assert getattr(clamped.effective, field) == type(asked[field])(ceiling)
    assert set(clamped.clamped) == set(Limits.__struct_fields__)  # everything was asked above a ceiling
    modest = clamp_limits(Limits(), msgspec.structs.replace(Quotas(), **{field: type(asked[field])(ceiling)}))
    for other in set(Limits.__struct_fields__) - {field}:  # a plugin asking the defaults is unaffected elsewhere
        assert getattr(modest.effective, other) == getattr(Limits(), other)


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


def test_vault_round_trip_and_wrong_key(tmp_path: Path) -> None:
    vault = Vault.for_data_dir(tmp_path)
    sealed = vault.seal({"api_key": "s3cret"})
    assert sealed is not None and "s3cret" not in sealed
    assert vault.unseal(sealed) == {"api_key": "s3cret"}
    assert Vault.for_data_dir(tmp_path).unseal(sealed) == {"api_key": "s3cret"}  # the key file persists
    (tmp_path / "other").mkdir()
    with pytest.raises(ServiceError, match="secret key changed"):
        Vault.for_data_dir(tmp_path / "other").unseal(sealed)


def _tar(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["/abs", "a/../../b", "..", "C:/win", "a\\b", "a/../../../etc/cron.d/x"])
def test_unsafe_names_are_refused_before_writing(tmp_path: Path, name: str) -> None:
    with pytest.raises(UploadRejected):
        unpack_archive(_tar(name), tmp_path, UploadCaps())
    assert list(tmp_path.iterdir()) == []


def test_dot_segments_are_harmless(tmp_path: Path) -> None:
    unpack_archive(_tar("./a/./b.txt"), tmp_path, UploadCaps())
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"x"
