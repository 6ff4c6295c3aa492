"""The client's gallery at `/g/{token}`: thumbnails, a viewer for `web`, download of `proof`.

The token is the invite's signed token (`orchestration.gallery_links`); a wrong one is a 404 with
no data. Links to photos are presigned GETs that expire after `DARKROOM_WEB__LINK_EXPIRY_S`: the
page asks for fresh ones when it loads. Opening the gallery publishes `gallery.viewed`, opening a
photo in the viewer `gallery.viewed` with its file id, and a download `file.downloaded`; each gets
a new event id, and the analytics consumer counts each id once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestration.gallery import GalleryPhoto, gallery_photos
from pipeline.contracts.events import FileDownloaded, GalleryViewed
from web.access import GalleryAccess, gallery_access
from web.context import WebContext, context, page

log = logging.getLogger(__name__)

DOWNLOADABLE = ("proof",)  # what a client may save; the original never leaves the studio


def _not_found() -> Response:
    return PlainTextResponse("No such gallery. Check the link in your invite mail.", status_code=404)


def _access(request: Request) -> GalleryAccess | None:
    ctx = context(request)
    return gallery_access(ctx.settings, ctx.db.conn(), request.path_params["token"])


async def _record(ctx: WebContext, payload: BaseModel, access: GalleryAccess) -> None:
    """Publish an access event; a broker outage loses the count, never the client's page."""
    try:
        await ctx.publish(payload, str(uuid.uuid4()), correlation_id=access.invite_id)
    except Exception as exc:
        log.warning("gallery %s: %s not published: %s", access.shoot_id, type(payload).__name__, exc)


async def gallery_page(request: Request) -> Response:
    """GET /g/{token}: the gallery page; publishes one gallery.viewed."""
    access = _access(request)
    if access is None:
        return _not_found()
    ctx = context(request)
    await _record(ctx, GalleryViewed(shoot_id=access.shoot_id, invite_id=access.invite_id,
                                     viewed_at=datetime.now(UTC)), access)
    return page("gallery", f"{access.title} · darkroom", {"title": access.title, "base": f"/g/{access.token}"})


_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


def placeholder_colour(blurhash: str) -> str | None:
    """A BlurHash's first component, the photo's average colour, as ``#rrggbb`` (characters 2-5, base 83).

    Painting that colour costs the page nothing; the full hash is served too for a page that decodes it.
    """
    value = 0
    for char in blurhash[2:6]:
        index = _BASE83.find(char)
        if index < 0:
            return None
        value = value * 83 + index
    return f"#{value:06x}" if len(blurhash) >= 6 and value <= 0xFFFFFF else None


def photo_json(ctx: WebContext, photo: GalleryPhoto) -> dict[str, Any]:
    """One photo for the page: presigned links of thumb and web, sizes, and what the read model adds."""
    expiry = ctx.settings.web.link_expiry_s
    renditions = {name: {"key": key, "width": w, "height": h, "bytes": b, "format": f}
                  for name, key, w, h, b, f in photo.renditions}
    thumb = renditions.get("thumb") or renditions.get("web") or next(iter(renditions.values()))
    large = renditions.get("web") or thumb
    out: dict[str, Any] = {
        "fileId": photo.file_id,
        "name": photo.name or photo.file_id,
        "thumb": ctx.store.presign_get(thumb["key"], expiry),
        "web": ctx.store.presign_get(large["key"], expiry),
        "width": large["width"], "height": large["height"],
        "downloads": [name for name in DOWNLOADABLE if name in renditions],
    }
    if photo.facts is not None:
        out["capture"] = photo.facts.model_dump(mode="json", by_alias=True, exclude_none=True)
    if photo.placeholder:
        out["placeholder"] = photo.placeholder  # the BlurHash, for a page that decodes it
        colour = placeholder_colour(photo.placeholder)
        if colour:
            out["placeholderColour"] = colour
    return out


async def gallery_photos_json(request: Request) -> Response:
    """GET /g/{token}/photos: the gallery's photos with fresh short-lived links."""
    access = _access(request)
    if access is None:
        return _not_found()
    ctx = context(request)
    photos = [photo_json(ctx, p) for p in gallery_photos(ctx.db.conn(), access.shoot_id)]
    return JSONResponse({"title": access.title, "photos": photos})


def _photo(ctx: WebContext, access: GalleryAccess, file_id: str) -> GalleryPhoto | None:
    return next((p for p in gallery_photos(ctx.db.conn(), access.shoot_id) if p.file_id == file_id), None)


async def photo_viewed(request: Request) -> Response:
    """POST /g/{token}/photos/{file}/viewed: the viewer opened a photo (one gallery.viewed with its file id)."""
    access = _access(request)
    if access is None:
        return _not_found()
    ctx = context(request)
    photo = _photo(ctx, access, request.path_params["file"])
    if photo is None:
        return _not_found()
    await _record(ctx, GalleryViewed(shoot_id=access.shoot_id, invite_id=access.invite_id, file_id=photo.file_id,
                                     viewed_at=datetime.now(UTC)), access)
    return Response(status_code=204)


async def download(request: Request) -> Response:
    """GET /g/{token}/photos/{file}/{rendition}: publishes file.downloaded, then redirects to a presigned attachment."""
    access = _access(request)
    if access is None:
        return _not_found()
    ctx = context(request)
    photo = _photo(ctx, access, request.path_params["file"])
    rendition = request.path_params["rendition"]
    key = next((k for name, k, *_ in photo.renditions if name == rendition), None) if photo else None
    if photo is None or key is None or rendition not in DOWNLOADABLE:
        return _not_found()
    await _record(ctx, FileDownloaded(shoot_id=access.shoot_id, invite_id=access.invite_id, file_id=photo.file_id,
                                      rendition=rendition, downloaded_at=datetime.now(UTC)), access)
    name = f"{photo.file_id}-{rendition}.{key.rsplit('.', 1)[-1]}"
    return RedirectResponse(ctx.store.presign_get(key, ctx.settings.web.link_expiry_s, download_as=name), status_code=302)


routes = [
    Route("/g/{token}", gallery_page),
    Route("/g/{token}/photos", gallery_photos_json),
    Route("/g/{token}/photos/{file}/viewed", photo_viewed, methods=["POST"]),
    Route("/g/{token}/photos/{file}/{rendition}", download),
]
