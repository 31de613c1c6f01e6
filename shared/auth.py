"""The API token that every mutating endpoint requires (``Authorization: Bearer <token>``)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.settings import Settings, get_settings

_bearer = HTTPBearer(auto_error=False)

MISSING_TOKEN = "missing API token: send 'Authorization: Bearer <token>'"
WRONG_TOKEN = "invalid API token"


def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> str:
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, MISSING_TOKEN, headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(credentials.credentials.encode(), settings.api_token.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, WRONG_TOKEN)
    return "token"


TokenDep = Annotated[str, Depends(require_token)]
