"""Whether a stored batch may still run here: checked each time an instance takes a batch to run it (its start,
its resume after a restart, its takeover from a lost instance), before any of its lines starts, and at each lease
renewal while it runs (a key removed from ``api_keys_file`` is revoked without a restart).

- **The key that created it** (since 2026-11-28): a batch remembers the sha256 hex digest of the API key that
  created it (``key_sha256`` in its stored object; never the key, never shown by the API). An operator revokes a
  key by removing it from ``api_keys_file`` (read again by every instance) or from ``api_keys`` and restarting;
  an instance whose keys no longer include that digest fails the batch (``failed``, error ``api_key_revoked``)
  instead of running it, even when its tenant still has other keys: the credential that asked for the work was
  withdrawn. A batch stored before the digest was kept (no ``key_sha256``) runs under its tenant, as before (it
  closes within its 24 h window).
- **A key this instance does not know yet** (``key_grace_s``, shared stores only: ``batches.store.key_grace_s``):
  a batch younger than that whose key is not in force here is left (lease released, looked at again later),
  since a key just added to ``api_keys_file`` reaches instances one by one; after that it fails as above.
- **Its tenant's place in a shared store** (``batches.store.tenants``): a tenant delisted since the batch was
  created keeps nothing more in the store (``failed``, ``store_not_allowed``).

Either way the lines answered before are closed into its output and error files, as for a cancel.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

KEY_REVOKED = "api_key_revoked"
STORE_NOT_ALLOWED = "store_not_allowed"


@dataclass(frozen=True)
class Refusal:
    """Why a batch is failed instead of run: its ``errors`` entry."""

    code: str
    message: str


def refusal(tenant: str, key_sha256: str | None, *, tenants: Collection[str] | None,
            keys: Collection[str] | None) -> Refusal | None:
    """None when the batch may run. ``tenants``: those the store may hold (None: any); ``keys``: the digests of
    the API keys configured now (None: not checked, a service used without keys). A batch with no
    ``key_sha256`` (stored before it was kept) is judged by its tenant only."""
    if tenants is not None and tenant not in tenants:
        return Refusal(STORE_NOT_ALLOWED, "this tenant's policy no longer allows its batch data in the shared "
                                          "batch store")
    if keys is not None and key_sha256 is not None and key_sha256 not in keys:
        return Refusal(KEY_REVOKED, "the API key that created this batch has been revoked; no further requests "
                                    "of it are run (those answered before are in its output and error files)")
    return None
