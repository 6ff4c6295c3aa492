"""Fault injection for crash and hang tests: die like a SIGKILL, or block forever, at a named point.

`DARKROOM_FAULT=<point>[:<stage>]` makes a worker `os._exit(137)` the first time it reaches
`<point>` (optionally only in `<stage>`). `os._exit` skips every cleanup, finally block and offset
commit, exactly as SIGKILL would, but at a deterministic place, which a signal sent from outside
cannot promise. Points:

- `after-apply`: state, idempotency key and outbox rows are committed to the database; the offset
  is not committed and nothing is published yet.
- `after-smtp`: the mail server accepted a mail; the database does not know yet.
- `after-publish`: the outbox's Kafka transaction is committed; the database still says unpublished.

`DARKROOM_FAULT_HANG_AT=<point>[:<stage>]` makes the thread that reaches `<point>` block forever
instead, as a librdkafka call that ignores its timeout does (librdkafka issues 5456 and 5511):
- `relay.commit`: the outbox rows are produced in an open transaction, about to be committed.

`DARKROOM_FAULT_ONCE_FILE=<path>`: a fault fires only in the process that creates this file, so a
worker restarted with the same environment (by the fleet supervisor) goes on normally.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

FAULT_ENV = "DARKROOM_FAULT"
HANG_ENV = "DARKROOM_FAULT_HANG_AT"
ONCE_ENV = "DARKROOM_FAULT_ONCE_FILE"
KILLED_EXIT_CODE = 137  # what a shell reports for SIGKILL, so logs read the same


def _armed(env: str, point: str, stage: str) -> bool:
    spec = os.environ.get(env, "")
    if not spec:
        return False
    want_point, _, want_stage = spec.partition(":")
    if want_point != point or (want_stage and want_stage != stage):
        return False
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False  # an earlier process had this fault
    return True


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()


def maybe_crash(point: str, stage: str) -> None:
    """Exit the process at once if `DARKROOM_FAULT` names this point (and stage)."""
    if _armed(FAULT_ENV, point, stage):
        log.warning("fault injection: %s crashing at %s", stage, point)
        _flush_logs()
        os._exit(KILLED_EXIT_CODE)


def maybe_hang(point: str, stage: str) -> None:
    """Block this thread forever if `DARKROOM_FAULT_HANG_AT` names this point (and stage)."""
    if _armed(HANG_ENV, point, stage):
        log.warning("fault injection: %s hanging at %s", stage, point)
        _flush_logs()
        threading.Event().wait()
