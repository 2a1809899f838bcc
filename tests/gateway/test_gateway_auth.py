"""``KeyRing``: who a key is, the tenant and the key's digest (what a batch remembers of its creator)."""

from __future__ import annotations

import pytest

from sovrouter.config import ApiKey, hash_key
from sovrouter.errors import AuthenticationError
from sovrouter.gateway.auth import Caller, KeyRing


def test_the_caller_is_the_tenant_and_the_digest_of_the_key_presented() -> None:
    ring = KeyRing([ApiKey(tenant="acme-us", key_sha256=hash_key("sk-one")),
                    ApiKey(tenant="acme-us", key_sha256=hash_key("sk-two"))])
    assert ring.caller("Bearer sk-two") == Caller("acme-us", hash_key("sk-two"))  # the configured form
    assert ring.caller("bearer  sk-one ") == Caller("acme-us", hash_key("sk-one"))
    assert ring.tenant_for("Bearer sk-one") == "acme-us"
    for bad in (None, "", "Basic sk-one", "Bearer", "Bearer sk-three"):
        with pytest.raises(AuthenticationError) as err:
            ring.caller(bad)
        assert "sk-" not in err.value.message
