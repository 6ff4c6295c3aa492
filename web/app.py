"""The ASGI app of `darkroom web`: studio (`/`), client gallery (`/g/{token}`), operations (`/ops`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from orchestration.analytics import ensure_schema
from web import gallery, ops, studio
from web.context import WebContext


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("Not found.", status_code=404)


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
                    exception_handlers={404: _not_found})
    app.state.ctx = ctx

    @app.middleware("http")
    async def private(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        # Pages and answers are per token: never cached, and a gallery token never leaks to the
        # store (or anyone else) in a Referer header.
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    return app
