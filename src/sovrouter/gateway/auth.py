"""API-key authentication: the tenant comes from the key, and only from the key.

Keys are configured as sha256 hex digests (``settings.api_keys``); a presented key is hashed and compared with
every configured digest in constant time (``hmac.compare_digest``), so neither the key nor the position of a
match leaks through timing. Error messages never echo what was presented.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from sovrouter.config import ApiKey
from sovrouter.errors import AuthenticationError


class KeyRing:
    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._keys = [(bytes.fromhex(k.key_sha256), k.tenant) for k in keys]

    def tenant_for(self, authorization: str | None) -> str:
        """The tenant of an ``Authorization: Bearer <key>`` header; raises :class:`AuthenticationError`."""
        if not authorization:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("malformed Authorization header: expected 'Bearer <key>'")
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        tenant: str | None = None
        for stored, owner in self._keys:  # no early exit: every digest is compared
            if hmac.compare_digest(stored, digest) and tenant is None:
                tenant = owner
        if tenant is None:
            raise AuthenticationError("invalid API key")
        return tenant
