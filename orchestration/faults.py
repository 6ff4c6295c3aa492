"""Fault injection for crash tests: die like a SIGKILL at a named point, once per process.

`DARKROOM_FAULT=<point>[:<stage>]` makes a worker `os._exit(137)` the first time it reaches
`<point>` (optionally only in `<stage>`). `os._exit` skips every cleanup, finally block and offset
commit, exactly as SIGKILL would, but at a deterministic place, which a signal sent from outside
cannot promise. Points:

- `after-apply`: state, idempotency key and outbox rows are committed to the database; the offset
  is not committed and nothing is published yet.
- `after-smtp`: the mail server accepted a mail; the database does not know yet.
- `after-publish`: the outbox's Kafka transaction is committed; the database still says unpublished.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

FAULT_ENV = "DARKROOM_FAULT"
KILLED_EXIT_CODE = 137  # what a shell reports for SIGKILL, so logs read the same


def maybe_crash(point: str, stage: str) -> None:
    """Exit the process at once if `DARKROOM_FAULT` names this point (and stage)."""
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return
    want_point, _, want_stage = spec.partition(":")
    if want_point == point and (not want_stage or want_stage == stage):
        log.warning("fault injection: %s crashing at %s", stage, point)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(KILLED_EXIT_CODE)
