"""Who may see what: the studio token for studio and operations, the invite token for a gallery.

Nothing of `darkroom web` answers with data without one of them. The studio token comes from
`DARKROOM_WEB__TOKEN` (or is generated into the data dir); a browser presents it once on the login
form (or as `?token=` in the URL `darkroom web` prints) and then carries a session cookie derived
from it, HttpOnly and SameSite=Strict; scripts send `Authorization: Bearer TOKEN`. A gallery is
reached only through its signed invite token (`orchestration.gallery_links`), and an unknown or
forged token gets the same 404 as a gallery that does not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from dataclasses import dataclass

from starlette.requests import Request

from orchestration.gallery_links import invite_of_token, local_secret
from pipeline.settings import Settings

COOKIE = "darkroom_studio"


def studio_token(settings: Settings) -> str:
    """The token of the studio and operations pages: the setting, or this data dir's generated one."""
    token = settings.web.token
    return token.get_secret_value() if token is not None else local_secret(settings, "web.token")


def session_value(token: str) -> str:
    """The cookie value of a logged-in browser: derived from the token, so the token itself is never stored there."""
    return hmac.new(token.encode(), b"darkroom studio session", hashlib.sha256).hexdigest()


def token_matches(token: str, given: str | None) -> bool:
    """Constant-time comparison of a presented token with the real one."""
    return bool(given) and hmac.compare_digest(token.encode(), (given or "").encode())


def is_studio(request: Request, token: str) -> bool:
    """Whether the request carries the studio token (bearer header) or the session cookie."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and token_matches(token, auth[7:].strip()):
        return True
    cookie = request.cookies.get(COOKIE)
    return bool(cookie) and hmac.compare_digest(session_value(token), cookie or "")


@dataclass(frozen=True)
class GalleryAccess:
    """A valid gallery token: which invite, which shoot, and the shoot's title if known."""

    token: str
    invite_id: str
    shoot_id: str
    title: str


def gallery_access(settings: Settings, conn: sqlite3.Connection, token: str) -> GalleryAccess | None:
    """The gallery a token opens, or None (forged, malformed, or an invite this platform does not know)."""
    invite_id = invite_of_token(settings, token)
    if invite_id is None:
        return None
    row = conn.execute("SELECT i.shoot_id, s.title FROM invites i LEFT JOIN invite_shoots s ON s.shoot_id = i.shoot_id"
                       " WHERE i.invite_id = ?", (invite_id,)).fetchone()
    if row is None:
        return None
    return GalleryAccess(token, invite_id, row["shoot_id"], row["title"] or row["shoot_id"])
