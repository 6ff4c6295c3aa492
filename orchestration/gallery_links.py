"""Gallery links: the unguessable token in the invite mail that opens a client's gallery.

A token is `{invite id}.{signature}`, the signature an HMAC-SHA256 of the invite id under a secret
only the platform holds (`DARKROOM_WEB__LINK_SECRET`). Invite ids are deterministic (a hash of
shoot and client), so without the signature anyone who knew a client's e-mail address could compute
one; with it, 128 bits have to be guessed. The token is a function of the invite id and the secret,
so a resent invite mail carries the same link, and a rebuilt database needs no table of tokens.
Changing the secret revokes every link at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pipeline.settings import Settings

_SIG_HEX = 32  # 128 bits


def _local_secret(path: Path, what: str) -> str:
    """A random value kept in `path`, created once (0600) by whichever process needs it first."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its value
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def local_secret(settings: Settings, name: str) -> str:
    """`<dev.data_dir>/run/<name>`: a per-installation random value (e.g. `web.secret`, `web.token`)."""
    return _local_secret(settings.dev.data_dir.expanduser().resolve() / "run" / name, name)


def link_secret(settings: Settings) -> bytes:
    """The key of gallery links: the setting, or this data dir's generated one."""
    secret = settings.web.link_secret
    return (secret.get_secret_value() if secret is not None else local_secret(settings, "web.secret")).encode()


def _signature(secret: bytes, invite_id: str) -> str:
    return hmac.new(secret, f"gallery\x1f{invite_id}".encode(), hashlib.sha256).hexdigest()[:_SIG_HEX]


def gallery_token(settings: Settings, invite_id: str) -> str:
    """The token of an invite's gallery link."""
    return f"{invite_id}.{_signature(link_secret(settings), invite_id)}"


def invite_of_token(settings: Settings, token: str) -> str | None:
    """The invite id a token was made for, or None if the token is not one of ours (compared in constant time)."""
    invite_id, _, signature = token.rpartition(".")
    if not invite_id or len(signature) != _SIG_HEX:
        return None
    expected = _signature(link_secret(settings), invite_id)
    return invite_id if hmac.compare_digest(expected, signature) else None


def web_base_url(settings: Settings) -> str:
    """Where the pages are reached from outside: the setting, or http://HOST:PORT of `darkroom web`."""
    if settings.web.base_url:
        return settings.web.base_url.rstrip("/")
    return f"http://{settings.web.host}:{settings.web.port}"


def gallery_url(settings: Settings, invite_id: str) -> str:
    """The link the invite mail carries."""
    return f"{web_base_url(settings)}/g/{gallery_token(settings, invite_id)}"
