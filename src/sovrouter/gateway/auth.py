"""API-key authentication: the tenant comes from the key, and only from the key; each tenant's slots.

Keys are configured as sha256 hex digests (``settings.api_keys``, and ``api_keys_file``, read again when it
changes: :mod:`~sovrouter.gateway.keyfile`); a presented key is hashed and compared with
every configured digest in constant time (``hmac.compare_digest``), so neither the key nor the position of a
match leaks through timing. Error messages never echo what was presented.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from sovrouter.catalog import Tenants
from sovrouter.config import ApiKey, Settings
from sovrouter.errors import AuthenticationError, TooManyRequestsError
from sovrouter.gateway.keyfile import KeyFile
from sovrouter.protocols import Release


@dataclass(frozen=True)
class Caller:
    """Who presented a key: its tenant and the key's sha256 hex digest (as configured; never the key itself)."""

    tenant: str
    key_sha256: str


class KeyRing:
    """The API keys in force: ``keys`` (the configuration's ``api_keys``), plus those of ``source`` (an
    ``api_keys_file``, :mod:`~sovrouter.gateway.keyfile`), which is checked for changes as keys are presented."""

    def __init__(self, keys: Sequence[ApiKey], source: KeyFile | None = None) -> None:
        self._inline = tuple(keys)
        self.source = source
        self._keys = self._compile()

    @classmethod
    def from_settings(cls, settings: Settings, known_tenants: Collection[str] | None = None) -> KeyRing:
        """The ring of a gateway. ``known_tenants``: the tenants a key may name (default: the tenants file's); an
        ``api_keys_file`` that does not read or validate raises :class:`~sovrouter.errors.ConfigError`."""
        if settings.api_keys_file is None:
            return cls(settings.api_keys)
        if known_tenants is None:
            known_tenants = {t.id for t in Tenants.load(settings.tenants).tenants}
        return cls(settings.api_keys, KeyFile(settings.api_keys_file, known_tenants, settings.api_keys,
                                              reload_s=settings.api_keys_reload_s))

    def _compile(self) -> list[tuple[bytes, str]]:
        extra = self.source.keys if self.source is not None else ()
        return [(bytes.fromhex(k.key_sha256), k.tenant) for k in (*self._inline, *extra)]

    def _current(self, now: bool = False) -> list[tuple[bytes, str]]:
        if self.source is not None and self.source.refresh(now):
            self._keys = self._compile()  # one assignment: a reader sees the old list or the new one
        return self._keys

    @property
    def count(self) -> int:
        """How many keys are in force (as last read; reading this does not check the file)."""
        return len(self._keys)

    def digests(self) -> frozenset[str]:
        """The sha256 hex digests of the keys in force now (a batch whose creating key is not among them fails),
        the file checked whatever ``api_keys_reload_s`` says: failing a batch is for good, and another instance
        may have accepted a key added since this one's last check (a batch of it was failed as revoked)."""
        return frozenset(stored.hex() for stored, _ in self._current(now=True))

    def tenant_for(self, authorization: str | None) -> str:
        """The tenant of an ``Authorization: Bearer <key>`` header; raises :class:`AuthenticationError`."""
        return self.caller(authorization).tenant

    def caller(self, authorization: str | None) -> Caller:
        """The tenant and key digest of an ``Authorization: Bearer <key>`` header (a batch remembers the digest of
        the key that created it); raises :class:`AuthenticationError`."""
        if not authorization:
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("malformed Authorization header: expected 'Bearer <key>'")
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        tenant: str | None = None
        for stored, owner in self._current():  # no early exit: every digest is compared
            if hmac.compare_digest(stored, digest) and tenant is None:
                tenant = owner
        if tenant is None:
            raise AuthenticationError("invalid API key")
        return Caller(tenant, digest.hex())


class TenantSlots:
    """Chat requests in flight per tenant on this instance, at most ``limit`` each (``None``: no limit). A request
    holds its slot until its answer ends (a stream: until its producer finishes, whether or not the client stays).
    The default :class:`~sovrouter.protocols.TenantLimit`; with ``shared_in_flight`` it is the instance's own part
    of :class:`~sovrouter.gateway.shared_slots.RedisTenantSlots`."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    async def in_flight(self, tenant: str) -> int:
        return self._held.get(tenant, 0)

    async def take(self, tenant: str) -> Release:
        """A slot for ``tenant``, or :class:`TooManyRequestsError`; the returned release may be called more than
        once (the first call frees the slot). Never suspends: the check and the count are one step."""
        held = self._held.get(tenant, 0)
        if self.limit is not None and held >= self.limit:
            raise TooManyRequestsError(too_many(self.limit))
        self._held[tenant] = held + 1

        def free() -> None:
            left = self._held[tenant] - 1
            if left:
                self._held[tenant] = left
            else:
                del self._held[tenant]

        return release_once(free)

    async def aclose(self) -> None:
        return None


def release_once(free: Callable[[], None]) -> Release:
    """A :data:`~sovrouter.protocols.Release` that runs ``free`` on its first call only."""
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            free()

    return release


def too_many(limit: int) -> str:
    return f"too many requests in flight for this API key (at most {limit}); retry after one has finished"
