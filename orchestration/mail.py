"""Mail: composing messages with deterministic Message-IDs and handing them to an SMTP server.

The Message-ID is derived from what the mail is about (an invite id, a shoot's batch number), so a
mail sent twice after a crash is the same mail twice; receivers (and the dev SMTP sink) keep one
copy per Message-ID.
"""

from __future__ import annotations

import hashlib
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from pipeline.errors import PermanentError, TransientError
from pipeline.settings import Settings

MAIL_DOMAIN = "darkroom.local"
H_CORRELATION = "X-Darkroom-Correlation-Id"
H_CAUSATION = "X-Darkroom-Causation-Id"


def message_id(*parts: str) -> str:
    """A deterministic RFC 5322 Message-ID for what `parts` name."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"<{digest}@{MAIL_DOMAIN}>"


@dataclass(frozen=True)
class Mail:
    """One mail as stored in the mail outbox."""

    message_id: str
    recipient: str
    subject: str
    body: str
    correlation_id: str
    cause_event_id: str

    def to_message(self, sender: str) -> EmailMessage:
        msg = EmailMessage()
        msg["Message-ID"] = self.message_id
        msg["From"] = sender
        msg["To"] = self.recipient
        msg["Subject"] = self.subject
        msg["Date"] = format_datetime(datetime.now(UTC))
        # The event chain travels with the mail, so a mail can be traced back to the shoot.
        msg[H_CORRELATION] = self.correlation_id
        msg[H_CAUSATION] = self.cause_event_id
        msg.set_content(self.body)
        return msg


class MailUnavailable(TransientError):
    """The SMTP server could not be reached or deferred the mail: retry later."""


class MailRejected(PermanentError):
    """The SMTP server refused the mail for good (e.g. unknown recipient)."""


def smtp_port_file(settings: Settings) -> Path:
    """Where the dev stack's SMTP sink publishes the port it listens on."""
    return settings.dev.data_dir.expanduser().resolve() / "run" / "smtp.port"


def smtp_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the SMTP server: the setting, or the dev sink's published port."""
    port = settings.orchestration.smtp_port
    if port == 0:
        try:
            port = int(smtp_port_file(settings).read_text().strip())
        except (OSError, ValueError) as exc:
            raise MailUnavailable(
                f"no SMTP port configured and no dev sink found at {smtp_port_file(settings)}: run `darkroom dev up` "
                "or set DARKROOM_ORCHESTRATION__SMTP_PORT"
            ) from exc
    return settings.orchestration.smtp_host, port


def send(mail: Mail, settings: Settings, timeout_s: float = 10.0) -> None:
    """Hand one mail to the SMTP server; returns once it answered 250 for the data."""
    host, port = smtp_address(settings)
    try:
        with smtplib.SMTP(host, port, timeout=timeout_s) as smtp:
            smtp.send_message(mail.to_message(settings.orchestration.mail_from))
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailRejected(f"{host}:{port} refused {mail.recipient}: {exc.recipients}") from exc
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise MailRejected(f"{host}:{port} refused the mail: {exc.smtp_code} {exc.smtp_error!r}") from exc
        raise MailUnavailable(f"{host}:{port} deferred the mail: {exc.smtp_code} {exc.smtp_error!r}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise MailUnavailable(f"SMTP server {host}:{port} unavailable: {exc}") from exc
