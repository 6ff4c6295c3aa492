"""The ASGI app of `darkroom web`: studio (`/`), client gallery (`/g/{token}`), operations (`/ops`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration.analytics import ensure_schema
from web import gallery, ops, studio
from web.context import WebContext


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("Not found.", status_code=404)


# Pages and answers are per token: never cached, never framed, and a gallery token never leaks to
# the store (or anyone else) in a Referer header.
_HEADERS = [(b"referrer-policy", b"no-referrer"), (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]


class PrivateHeaders:
    """Pure ASGI middleware (streams pass through untouched) adding the headers above to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers + _HEADERS}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(ctx: WebContext) -> Starlette:
    """The app around `ctx`; the live feed (if any) starts and stops with it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ensure_schema(ctx.db.conn())
        if ctx.feed is not None:
            ctx.feed.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            if ctx.feed is not None:
                ctx.feed.stop()

    app = Starlette(routes=[*studio.routes, *gallery.routes, *ops.routes], lifespan=lifespan,
                    exception_handlers={404: _not_found}, middleware=[Middleware(PrivateHeaders)])
    app.state.ctx = ctx

    return app
