"""Sealing plugin secrets at rest (rh_host.service.vault)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rh_host.service.errors import ServiceError
from rh_host.service.vault import Vault


def test_vault_round_trip_and_wrong_key(tmp_path: Path) -> None:
    vault = Vault.for_data_dir(tmp_path)
    sealed = vault.seal({"api_key": "s3cret"})
    assert sealed is not None and "s3cret" not in sealed
    assert vault.unseal(sealed) == {"api_key": "s3cret"}
    assert Vault.for_data_dir(tmp_path).unseal(sealed) == {"api_key": "s3cret"}  # the key file persists
    (tmp_path / "other").mkdir()
    with pytest.raises(ServiceError, match="secret key changed"):
        Vault.for_data_dir(tmp_path / "other").unseal(sealed)
