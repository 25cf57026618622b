"""The optional bearer token of the views and /ws (the health checks stay open).

Browsers cannot set headers on a WebSocket, so ``?token=`` is accepted as well.
"""
from __future__ import annotations

import hmac
from typing import Any

from streamapp.settings import WebSettings


def authorized(request: Any, web: WebSettings) -> bool:
    if web.auth_token is None:
        return True
    expected = web.auth_token.get_secret_value()
    header = request.headers.get("Authorization", "")
    offered = header[len("Bearer "):] if header.startswith("Bearer ") else request.query.get("token", "")
    return hmac.compare_digest(offered.encode(), expected.encode())
