"""The operator's dashboard at ``/``: a static page (no build step) that reads ``/ws``.

The page itself carries no data, so it stays open like the health checks; the data
behind it (``/ws``, ``/stats``, ``/keys``) is guarded by the bearer token when one is
set, and the page passes ``?token=`` on to them.
"""
from __future__ import annotations

from pathlib import Path

from faust.web import Request, Response, View

from streamapp.app import app

STATIC = Path(__file__).parent / "static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# Only the files shipped with the package are served: no path ever reaches the disk.
_FILES = {path.name: path for path in STATIC.iterdir() if path.suffix in _TYPES}


def _file_response(view: View, name: str) -> Response:
    path = _FILES.get(name)
    if path is None:
        return view.error(404, f"no such file: {name}")
    return view.text(path.read_text(encoding="utf-8"), content_type=_TYPES[path.suffix],
                     headers={"Cache-Control": "no-cache"})


@app.page("/")
class Dashboard(View):
    async def get(self, request: Request) -> Response:
        return _file_response(self, "index.html")


@app.page("/static/{name}")
class DashboardStatic(View):
    async def get(self, request: Request, name: str) -> Response:
        return _file_response(self, name)
