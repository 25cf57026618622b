"""/keys: the LLM key pool as this worker sees it (key names, states, usage), never secrets."""
from __future__ import annotations

from faust.web import Request, Response

from agents.assessor import pool_summary
from streamapp.app import app
from web.views import GuardedView


@app.page("/keys")
class Keys(GuardedView):
    async def get(self, request: Request) -> Response:
        return self.json(pool_summary())
