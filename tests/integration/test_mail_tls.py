"""Mail to a real server: STARTTLS with the server's certificate verified against a private CA, and AUTH.

The server is a Mailpit of its own (the dev stack's binary) requiring STARTTLS and a login from its
password file, with a certificate of a throw-away CA; what it accepted is read back from its API.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from operations.devstack import DevStack
from orchestration.mail import Mail, MailUnavailable, send
from orchestration.mailbox import Mailbox
from pipeline.settings import Settings
from tests.tls import make_server_pki

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def tls_mailpit(stack: DevStack, tmp_path: Path):
    (tmp_path / "pki").mkdir()
    pki = make_server_pki(tmp_path / "pki")
    smtp, ui = _free_port(), _free_port()
    users = tmp_path / "smtp-users"
    users.write_text("studio-mailer:s3cret\n")
    proc = subprocess.Popen(
        [str(stack.smtp.binary), "--smtp", f"127.0.0.1:{smtp}", "--listen", f"127.0.0.1:{ui}",
         "--database", str(tmp_path / "mailpit.db"), "--smtp-tls-cert", str(pki.chain), "--smtp-tls-key", str(pki.key),
         "--smtp-require-starttls", "--smtp-auth-file", str(users)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    box = Mailbox(f"http://127.0.0.1:{ui}")
    deadline = time.monotonic() + 60
    while True:
        try:
            box.messages(1)
            break
        except Exception:
            assert proc.poll() is None and time.monotonic() < deadline, "Mailpit with TLS did not start"
            time.sleep(0.2)
    yield smtp, box, pki
    proc.terminate()
    proc.wait(10)


def _mail(tag: str) -> Mail:
    return Mail(f"<{tag}@darkroom.local>", "client@example.com", f"tls {tag}", "hello", "corr", "cause")


def test_starttls_and_login_reach_a_server_that_requires_them(tls_mailpit) -> None:
    port, box, pki = tls_mailpit
    settings = Settings().model_copy(deep=True)
    orch = settings.orchestration
    orch.smtp_port, orch.smtp_security, orch.smtp_ca_bundle = port, "starttls", pki.ca
    orch.smtp_username, orch.smtp_password = "studio-mailer", SecretStr("s3cret")

    send(_mail("ok"), settings)
    [delivered] = box.deliveries("<ok@darkroom.local>")
    assert delivered.to == ("client@example.com",)

    # A wrong password is refused; the mail is retried later (transient), not dead-lettered.
    orch.smtp_password = SecretStr("wrong")
    with pytest.raises(MailUnavailable, match="SMTP_PASSWORD"):
        send(_mail("badlogin"), settings)
    orch.smtp_password = SecretStr("s3cret")

    # Without STARTTLS the server refuses; the mail is retried later, not lost.
    orch.smtp_security = "none"
    with pytest.raises(MailUnavailable):
        send(_mail("plain"), settings)
    # A certificate from a CA we do not trust is refused too.
    orch.smtp_security, orch.smtp_ca_bundle = "starttls", None
    with pytest.raises(MailUnavailable):
        send(_mail("untrusted"), settings)
    for tag in ("badlogin", "plain", "untrusted"):
        assert box.deliveries(f"<{tag}@darkroom.local>") == []
