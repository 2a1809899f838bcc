"""``sovrouter serve`` does not open the operators' pages beyond loopback without operator keys (review)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.cli.serve import check_exposure
from sovrouter.config import OperatorKey, Settings, hash_key
from sovrouter.errors import ConfigError


def _settings(**kw: object) -> Settings:
    return Settings(catalog=Path("models.json"), tenants=Path("tenants.json"), **kw)


def test_open_operator_pages_on_a_public_interface_are_refused() -> None:
    with pytest.raises(ConfigError, match="operator_keys"):
        check_exposure(_settings(), "0.0.0.0")
    check_exposure(_settings(), "0.0.0.0", open_operator_pages=True)  # asked for in so many words
    for host in ("127.0.0.1", "::1", "localhost"):
        check_exposure(_settings(), host)
    check_exposure(_settings(operator_keys=[OperatorKey(key_sha256=hash_key("op"))]), "0.0.0.0")
