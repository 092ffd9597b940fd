"""API-key authentication: open while no key exists (loopback only), else a valid key."""

from __future__ import annotations

import time

from assay.errors import AuthenticationError
from assay.storage import ApiKey, Storage

__all__ = ["ApiKeys"]


class ApiKeys:
    """Checks bearer keys against storage. Whether any key exists is re-read every
    ``cache_seconds``: keys are made and revoked by the CLI, in another process. Once a key
    has existed, keys stay required until the server restarts, even if every key is
    revoked: revoking the last key must not open a server that may listen beyond loopback
    (the loopback rule is checked when it starts)."""

    def __init__(self, storage: Storage, *, cache_seconds: float = 2.0) -> None:
        self._storage = storage
        self._cache_seconds = cache_seconds
        self._checked_at = float("-inf")
        self._required = False

    async def required(self) -> bool:
        now = time.monotonic()
        if not self._required and now - self._checked_at > self._cache_seconds:
            self._required = await self._storage.has_active_api_keys()
            self._checked_at = now
        return self._required

    async def check(self, scheme: str | None, secret: str | None) -> ApiKey | None:
        """The request's key (None on a server that requires none); raises
        AuthenticationError unless the request may go on."""
        if not await self.required():
            return None
        if secret is None or (scheme or "").lower() != "bearer":
            raise AuthenticationError(
                "this server requires an API key: Authorization: Bearer <key>"
            )
        key = await self._storage.verify_api_key(secret)
        if key is None:
            raise AuthenticationError(
                "invalid or revoked API key (once a key has existed, every request needs "
                "an active one: `assay keys create`)"
            )
        return key
