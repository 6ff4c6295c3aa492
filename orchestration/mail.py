"""Mail: composing messages with deterministic Message-IDs and handing them to an SMTP server.

The Message-ID is derived from what the mail is about (an invite id, a shoot's batch number), so a
mail sent twice after a crash is the same mail twice; receivers keep one copy per
Message-ID (Mailpit, the dev stack's server, shows each delivery). A real server is reached with STARTTLS or TLS and a login (settings).
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from pipeline.errors import ConfigError, PermanentError, TransientError
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


# Refusals that a change of settings fixes (RFC 3207/4954): retried, so fixing the settings loses no mail.
_NEEDS_SETTINGS = frozenset({530, 534, 535, 538})


class MailUnavailable(TransientError):
    """The SMTP server could not be reached or deferred the mail: retry later."""


class MailRejected(PermanentError):
    """The SMTP server refused the mail for good (e.g. unknown recipient)."""


def smtp_port_file(settings: Settings) -> Path:
    """Where the dev stack's Mailpit publishes the SMTP port it listens on."""
    return settings.dev.data_dir.expanduser().resolve() / "run" / "smtp.port"


def smtp_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the SMTP server: the setting, or the dev sink's published port."""
    port = settings.orchestration.smtp_port
    if port == 0:
        try:
            port = int(smtp_port_file(settings).read_text().strip())
        except (OSError, ValueError) as exc:
            raise MailUnavailable(
                f"no SMTP port configured and no dev Mailpit found at {smtp_port_file(settings)}: run `darkroom dev up` "
                "or set DARKROOM_ORCHESTRATION__SMTP_PORT"
            ) from exc
    return settings.orchestration.smtp_host, port


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the mail server's certificate and name; a private CA through DARKROOM_ORCHESTRATION__SMTP_CA_BUNDLE."""
    bundle = settings.orchestration.smtp_ca_bundle
    if bundle is not None and not bundle.is_file():
        raise ConfigError(f"DARKROOM_ORCHESTRATION__SMTP_CA_BUNDLE {str(bundle)!r} is not a file")
    return ssl.create_default_context(cafile=str(bundle) if bundle is not None else None)


def check_mail_settings(settings: Settings) -> None:
    """Raise ConfigError for mail settings that cannot work (checked at start-up, before any connection)."""
    orch = settings.orchestration
    if (orch.smtp_username is None) != (orch.smtp_password is None):
        raise ConfigError("DARKROOM_ORCHESTRATION__SMTP_USERNAME and DARKROOM_ORCHESTRATION__SMTP_PASSWORD go together")
    if orch.smtp_security != "none":
        tls_context(settings)


def _connect(settings: Settings, host: str, port: int, timeout_s: float) -> smtplib.SMTP:
    """A connection, upgraded to TLS and logged in as the settings say."""
    orch = settings.orchestration
    if orch.smtp_security == "tls":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout_s, context=tls_context(settings))
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout_s)
    try:
        if orch.smtp_security == "starttls":
            smtp.starttls(context=tls_context(settings))  # raises SMTPNotSupportedError if the server cannot
        if orch.smtp_username is not None and orch.smtp_password is not None:
            smtp.login(orch.smtp_username, orch.smtp_password.get_secret_value())
    except BaseException:
        smtp.close()
        raise
    return smtp


def send(mail: Mail, settings: Settings, timeout_s: float = 10.0) -> None:
    """Hand one mail to the SMTP server; returns once it answered 250 for the data."""
    host, port = smtp_address(settings)
    try:
        with _connect(settings, host, port, timeout_s) as smtp:
            smtp.send_message(mail.to_message(settings.orchestration.mail_from))
    except smtplib.SMTPAuthenticationError as exc:
        # Transient on purpose: the mail is retried (and dead-lettered only after the retries), so fixing
        # the password loses nothing.
        raise MailUnavailable(
            f"{host}:{port} refused the login of {settings.orchestration.smtp_username!r}: {exc.smtp_code} "
            f"{exc.smtp_error!r}; check DARKROOM_ORCHESTRATION__SMTP_USERNAME and __SMTP_PASSWORD"
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise MailUnavailable(f"{host}:{port} does not offer what DARKROOM_ORCHESTRATION__SMTP_SECURITY="
                              f"{settings.orchestration.smtp_security} needs: {exc}") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailRejected(f"{host}:{port} refused {mail.recipient}: {exc.recipients}") from exc
    except smtplib.SMTPResponseException as exc:
        if exc.smtp_code in _NEEDS_SETTINGS:
            # "530 STARTTLS / authentication required" and the like: the settings, not the mail, are wrong.
            raise MailUnavailable(
                f"{host}:{port} wants TLS or a login: {exc.smtp_code} {exc.smtp_error!r}; check "
                "DARKROOM_ORCHESTRATION__SMTP_SECURITY, __SMTP_USERNAME and __SMTP_PASSWORD"
            ) from exc
        if 500 <= exc.smtp_code < 600:
            raise MailRejected(f"{host}:{port} refused the mail: {exc.smtp_code} {exc.smtp_error!r}") from exc
        raise MailUnavailable(f"{host}:{port} deferred the mail: {exc.smtp_code} {exc.smtp_error!r}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise MailUnavailable(f"SMTP server {host}:{port} unavailable: {exc}") from exc
