"""The dev stack's Mailpit is recognised by its command line (another process's `dev status` and `dev down`)."""

from __future__ import annotations

from pathlib import Path

from operations.devstack.mailpit import MailServer
from pipeline.settings import Settings


def test_the_marker_is_one_element_of_mailpits_command_line(tmp_path: Path) -> None:
    server = MailServer(Settings(), tmp_path)
    argv = server.argv(1025, 8025)
    # pid() checks `marker in argv` element by element: a substring would never match.
    assert server.process.marker in argv
    assert argv[argv.index("--database") + 1] == server.process.marker
