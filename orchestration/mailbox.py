"""Reading delivered mail from Mailpit's API (`/api/v1/...`): `darkroom mail list`, the demo and the tests.

The dev stack runs Mailpit (operations/devstack/mailpit.py); any Mailpit works through
DARKROOM_ORCHESTRATION__MAIL_API_URL. Plain urllib: a handful of GETs needs no client library.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.settings import Settings


class MailboxUnavailable(RuntimeError):
    """Mailpit's API cannot be reached; the message says where it was looked for."""


@dataclass(frozen=True)
class ReceivedMail:
    """One delivery as Mailpit stored it (a resent mail is a second delivery with the same Message-ID)."""

    id: str  # Mailpit's own id of this delivery
    message_id: str  # the RFC 5322 Message-ID, with its angle brackets
    to: tuple[str, ...]
    subject: str
    created: str


def mail_ui_port_file(settings: Settings) -> Path:
    """Where the dev stack's Mailpit publishes its web UI/API port."""
    return settings.dev.data_dir.expanduser().resolve() / "run" / "mail-ui.port"


def mail_api_url(settings: Settings) -> str:
    """The Mailpit base URL: the setting, or the dev stack's published port."""
    if settings.orchestration.mail_api_url:
        return settings.orchestration.mail_api_url.rstrip("/")
    try:
        port = int(mail_ui_port_file(settings).read_text().strip())
    except (OSError, ValueError) as exc:
        raise MailboxUnavailable(
            f"no Mailpit found at {mail_ui_port_file(settings)}: run `darkroom dev up` or set "
            "DARKROOM_ORCHESTRATION__MAIL_API_URL"
        ) from exc
    return f"http://127.0.0.1:{port}"


class Mailbox:
    """Mailpit's API at `base_url`."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s

    @classmethod
    def of(cls, settings: Settings) -> Mailbox:
        return cls(mail_api_url(settings))

    def _get(self, path: str) -> Any:
        url = f"{self.base_url}{path}"
        try:
            with urllib.request.urlopen(url, timeout=self._timeout_s) as resp:
                return json.loads(resp.read())
        except (OSError, urllib.error.URLError, ValueError) as exc:
            raise MailboxUnavailable(f"Mailpit at {self.base_url} did not answer {path}: {exc}") from exc

    def messages(self, limit: int = 1000) -> list[ReceivedMail]:
        """The latest `limit` deliveries, oldest first."""
        found: list[ReceivedMail] = []
        start = 0
        while len(found) < limit:
            page = self._get(f"/api/v1/messages?start={start}&limit={min(250, limit - len(found))}")
            batch = page.get("messages") or []
            found += [_summary(m) for m in batch]
            start += len(batch)
            if not batch or start >= int(page.get("messages_count", page.get("total", 0))):
                break
        return list(reversed(found))

    def text(self, mail_id: str) -> str:
        """The plain-text body of a delivery."""
        return str(self._get(f"/api/v1/message/{urllib.parse.quote(mail_id)}").get("Text", ""))

    def headers(self, mail_id: str) -> dict[str, list[str]]:
        """Every header of a delivery, by name."""
        return dict(self._get(f"/api/v1/message/{urllib.parse.quote(mail_id)}/headers"))

    def deliveries(self, message_id: str) -> list[ReceivedMail]:
        """Every delivery of the mail with this Message-ID."""
        return [m for m in self.messages() if m.message_id == message_id]


def _summary(raw: dict[str, Any]) -> ReceivedMail:
    mid = str(raw.get("MessageID") or "")
    return ReceivedMail(
        id=str(raw["ID"]),
        message_id=mid if mid.startswith("<") or not mid else f"<{mid}>",
        to=tuple(str(a.get("Address", "")) for a in raw.get("To") or []),
        subject=str(raw.get("Subject", "")),
        created=str(raw.get("Created", "")),
    )
