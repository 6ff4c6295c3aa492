"""The studio: shoots, browser uploads straight to the store, live progress, views and downloads.

Every route here needs the studio token (`web.access`): without it, pages answer 401 with the
login form and the API answers 401 with an error, and neither carries any data.
"""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from orchestration.analytics import shoot_analytics
from orchestration.gallery import gallery_photos
from orchestration.gallery_links import gallery_url
from pipeline.contracts.events import ShootCreated
from pipeline.envelope import deterministic_id
from storage import ORIGINALS_PREFIX, InvalidKey, parse_original_key
from storage.keys import ALLOWED_EXTENSIONS, content_type_for
from web.access import COOKIE, is_studio, session_value, token_matches
from web.context import context, json_body, page, studio_only, unauthorised

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
KEEPALIVE_S = 15.0


def _shoot_id(request: Request) -> str | None:
    shoot = request.path_params["shoot"]
    return shoot if _ID.match(shoot) else None


async def login(request: Request) -> Response:
    """POST /login: the token from the form becomes a session cookie."""
    ctx = context(request)
    form = await request.form()
    nxt = str(form.get("next") or "/")
    if not token_matches(ctx.token, str(form.get("token") or "")):
        return page("login", "darkroom · sign in", {"error": "That token is not right.", "next": nxt}, status_code=401)
    return _signed_in(ctx.token, nxt if nxt in ("/", "/ops") else "/")


def _signed_in(token: str, to: str) -> Response:
    response = RedirectResponse(to, status_code=303)
    response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict", path="/")
    return response


async def studio_page(request: Request) -> Response:
    """GET /: the studio page (a `?token=` link signs the browser in and drops the token from the URL)."""
    ctx = context(request)
    if token_matches(ctx.token, request.query_params.get("token")):
        return _signed_in(ctx.token, request.url.path)
    if not is_studio(request, ctx.token):
        return unauthorised(request)
    return page("studio", "darkroom · studio", {"extensions": sorted(ALLOWED_EXTENSIONS)})


@studio_only
async def list_shoots(request: Request) -> Response:
    """GET /api/shoots: the shoots the platform knows (from the invites and gallery read models)."""
    ctx = context(request)
    conn = ctx.db.conn()
    shoots: dict[str, dict[str, Any]] = {}
    for row in conn.execute("SELECT shoot_id, title, client_email FROM invite_shoots ORDER BY shoot_id"):
        shoots[row["shoot_id"]] = {"shootId": row["shoot_id"], "title": row["title"], "clientEmail": row["client_email"]}
    for row in conn.execute("SELECT DISTINCT shoot_id FROM gallery_photos"):
        shoots.setdefault(row["shoot_id"], {"shootId": row["shoot_id"], "title": row["shoot_id"], "clientEmail": None})
    for row in conn.execute("SELECT invite_id, shoot_id, status FROM invites"):
        if row["shoot_id"] in shoots:
            shoots[row["shoot_id"]].update(galleryUrl=gallery_url(ctx.settings, row["invite_id"]), invite=row["status"])
    return JSONResponse({"shoots": list(shoots.values())})


@studio_only
async def create_shoot(request: Request) -> Response:
    """POST /api/shoots {title, clientEmail}: publishes shoot.created (the client gets the invite)."""
    body = await json_body(request)
    title = str(body.get("title") or "").strip()
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "shoot"
    shoot_id = f"{slug}-{uuid.uuid4().hex[:6]}"
    try:
        payload = ShootCreated(shoot_id=shoot_id, title=title, client_email=str(body.get("clientEmail") or ""))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"not a valid shoot: {problems}"}, status_code=422)
    await context(request).publish(payload, deterministic_id("shoot.created", shoot_id))
    return JSONResponse({"shootId": shoot_id, "title": title, "clientEmail": payload.client_email}, status_code=201)


@studio_only
async def upload_url(request: Request) -> Response:
    """POST /api/shoots/{shoot}/uploads {name, size}: a presigned PUT of that one original of the shoot.

    The photo keeps the photographer's own file name (any name S3 accepts, checked here exactly as
    ingest checks keys put by any other client: `storage.keys.parse_original_key`), and the answer
    carries the file id ingest will give it, so the page can follow the photo's events. The URL is
    good for that key only: the browser cannot write anywhere else, whatever it sends the store. The
    size is the browser's word (a presigned PUT cannot bound it); ingest checks the real one.
    """
    shoot = _shoot_id(request)
    if shoot is None:
        return JSONResponse({"error": "not a shoot id"}, status_code=404)
    body = await json_body(request)
    name = unicodedata.normalize("NFC", str(body.get("name") or ""))
    key = f"{ORIGINALS_PREFIX}{shoot}/{name}"
    try:
        ref = parse_original_key(key)
        if "/" in name or "\\" in name:
            raise InvalidKey("a file name, not a path, is expected")
    except InvalidKey as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    ctx = context(request)
    limit = ctx.settings.imaging.max_input_bytes
    if int(body.get("size") or 0) > limit:
        return JSONResponse({"error": f"too large: photos of up to {limit} bytes are accepted"}, status_code=413)
    upload = ctx.store.presign_put(key, ctx.settings.web.upload_expiry_s)
    return JSONResponse({"url": upload.url, "method": upload.method, "key": upload.key, "fileId": ref.file_id,
                         "headers": {**upload.headers, "Content-Type": content_type_for(ref.ext)},
                         "expiresS": upload.expires_s})


@studio_only
async def shoot_photos(request: Request) -> Response:
    """GET /api/shoots/{shoot}/photos: the gallery so far, with views and downloads."""
    shoot = _shoot_id(request)
    if shoot is None:
        return JSONResponse({"error": "not a shoot id"}, status_code=404)
    ctx = context(request)
    conn = ctx.db.conn()
    expiry = ctx.settings.web.link_expiry_s
    photos = []
    for photo in gallery_photos(conn, shoot):
        keys = {name: key for name, key, *_ in photo.renditions}
        shown = keys.get("thumb") or next(iter(keys.values()), None)
        photos.append({"fileId": photo.file_id, "url": ctx.store.presign_get(shown, expiry) if shown else None,
                       "rendition": "thumb" if "thumb" in keys else next(iter(keys), None)})
    return JSONResponse({"shootId": shoot, "photos": photos, "analytics": _analytics(conn, shoot)})


@studio_only
async def analytics(request: Request) -> Response:
    """GET /api/shoots/{shoot}/analytics: views and downloads counted by the analytics consumer."""
    shoot = _shoot_id(request)
    if shoot is None:
        return JSONResponse({"error": "not a shoot id"}, status_code=404)
    return JSONResponse(_analytics(context(request).db.conn(), shoot))


def _analytics(conn: Any, shoot: str) -> dict[str, Any]:
    counts = shoot_analytics(conn, shoot)
    return {"views": counts.views, "downloads": counts.downloads,
            "photos": {fid: {"views": v, "downloads": d} for fid, (v, d) in counts.photos.items()}}


@studio_only
async def events(request: Request) -> Response:
    """GET /api/shoots/{shoot}/events: server-sent events of the shoot (renditions, gallery, dead letters, access)."""
    shoot = _shoot_id(request)
    ctx = context(request)
    if shoot is None or ctx.feed is None:
        return JSONResponse({"error": "no live feed for this shoot"}, status_code=404)
    feed = ctx.feed
    queue = feed.subscribe(shoot)

    async def stream() -> AsyncIterator[str]:
        try:
            yield _sse({"type": "feed", "ready": feed.ready.is_set(), "error": feed.error})
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                yield _sse(item)
        finally:
            feed.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _sse(item: dict[str, Any]) -> str:
    return f"data: {json.dumps(item)}\n\n"



routes = [
    Route("/", studio_page),
    Route("/login", login, methods=["POST"]),
    Route("/api/shoots", list_shoots),
    Route("/api/shoots", create_shoot, methods=["POST"]),
    Route("/api/shoots/{shoot}/uploads", upload_url, methods=["POST"]),
    Route("/api/shoots/{shoot}/photos", shoot_photos),
    Route("/api/shoots/{shoot}/analytics", analytics),
    Route("/api/shoots/{shoot}/events", events),
]
