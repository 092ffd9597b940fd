"""FastAPI dependencies: the platform, and API-key authentication."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from assay.app import Platform
from assay.errors import AuthenticationError

__all__ = ["PlatformDep", "require_api_key"]

_bearer = HTTPBearer(auto_error=False, description="An API key made with `assay keys create`.")


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def require_api_key(
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Open when no API key exists (only allowed on loopback); otherwise a valid key."""
    if not await platform.auth_required():
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("this server requires an API key: Authorization: Bearer <key>")
    if await platform.storage.verify_api_key(credentials.credentials) is None:
        raise AuthenticationError("invalid or revoked API key")
