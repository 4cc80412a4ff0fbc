"""Bearer-token guard for the API: `read` to look, `admin` to change silences or the degradation level.

Tokens come from `Settings.tokens`; a service with no tokens configured refuses every guarded request
(closed by default), so a forgotten config never exposes call transcripts.
"""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from voxwatch.config import ApiToken, Scope, Settings

_bearer = HTTPBearer(auto_error=False, description="API token: `Authorization: Bearer <token>`")


def _settings(request: Request) -> Settings | None:
    ctx = getattr(request.app.state, "ctx", None)
    return getattr(ctx, "settings", None)


def require_scope(scope: Scope | str) -> Callable[..., ApiToken]:
    """A FastAPI dependency that returns the caller's token, or answers 401 (no/bad token) / 403 (scope)."""
    needed = Scope(scope)

    def guard(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> ApiToken:
        challenge = {"WWW-Authenticate": "Bearer"}
        if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers=challenge)
        settings = _settings(request)
        token = settings.token_for(creds.credentials) if settings is not None else None
        if token is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked token", headers=challenge)
        if not token.allows(needed):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"token {token.name!r} lacks the {needed.value!r} scope")
        return token

    guard.__name__ = f"require_{needed.value}"
    return guard


require_read = require_scope(Scope.READ)
require_admin = require_scope(Scope.ADMIN)
