"""What every route of `darkroom web` shares: settings, read models, store, publisher, live feed."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from orchestration.db import Database
from pipeline.contracts.events import event_message
from pipeline.publisher import Publisher
from pipeline.settings import Settings
from storage import ObjectStore
from web.access import is_studio
from web.live import LiveFeed

log = logging.getLogger(__name__)


@dataclass
class WebContext:
    """The app's collaborators; tests build one with fakes."""

    settings: Settings
    db: Database
    store: ObjectStore
    publisher: Publisher | Any  # anything with publish_all([Outgoing])
    feed: LiveFeed | None
    token: str  # the studio token

    async def publish(self, payload: BaseModel, event_id: str, correlation_id: str | None = None) -> str:
        """Publish one event (waits for the broker off the event loop); returns its id."""
        envelope, message = event_message(payload, event_id=event_id, producer=self.settings.producer_name,
                                          correlation_id=correlation_id)
        await run_in_threadpool(self.publisher.publish_all, [message])
        return envelope.event_id


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


_STATIC = files("web") / "static"


def page(name: str, title: str, config: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """A page of `web/static`: its HTML with the shared style, its script and its config inlined.

    Inlined, not served as files: every response then needs a token, and a page is one request.
    """
    html = (_STATIC / f"{name}.html").read_text()
    script_file = _STATIC / f"{name}.js"
    script = script_file.read_text() if script_file.is_file() else ""
    # `</` cannot end the script element early once escaped.
    data = json.dumps(config).replace("</", "<\\/")
    html = (html.replace("%%TITLE%%", _escape(title)).replace("%%STYLE%%", (_STATIC / "style.css").read_text())
            .replace("%%CONFIG%%", data).replace("%%SCRIPT%%", script))
    return HTMLResponse(html, status_code=status_code)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def unauthorised(request: Request, error: str = "") -> Response:
    """401: the login form for a browser page, a JSON error for the API; never any data."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "a studio token is required (Authorization: Bearer TOKEN)"}, status_code=401)
    return page("login", "darkroom · sign in", {"error": error, "next": request.url.path}, status_code=401)


Handler = Callable[[Request], Awaitable[Response]]


def studio_only(handler: Handler) -> Handler:
    """The route answers only requests carrying the studio token or its session cookie (else 401, no data)."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        if not is_studio(request, context(request).token):
            return unauthorised(request)
        return await handler(request)

    return guarded


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or {} when it has none."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
