"""How a failure is classified: retry it, or dead-letter it at once."""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """Transient failures are retried with backoff; permanent ones go to the dead-letter queue."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


class TransientError(Exception):
    """Worth retrying: an outage or timeout of something we depend on."""


class Unavailable(TransientError):
    """A dependency (the broker, the object store) is away: an outage, not a fault of the event at hand.

    The runner retries these with capped backoff for as long as the outage lasts, its partition
    paused, and never counts them toward dead-lettering (pipeline/runner.py, step 5): an outage
    longer than the retry budget must not fill the dead-letter queue. Raise it only when nothing
    about the event can be the cause (no answer at all, a gateway saying the service is down);
    a dependency that answers with an error still counts, so a poison event cannot stall its
    partition forever.
    """


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says a dependency is away (see Unavailable)."""
    return isinstance(exc, Unavailable)


class PermanentError(Exception):
    """Never worth retrying: the input itself is bad. The event is dead-lettered with this message."""


class InvalidEvent(PermanentError):
    """The message is not an event we can read (bad JSON, unknown type, invalid payload)."""


def default_classify(exc: BaseException) -> ErrorKind:
    """Transient for our own TransientError and for connection and timeout errors; permanent otherwise.

    Unknown errors are permanent so that a poison event can never stop its partition; the dead
    letter keeps it, and `dlq redrive` replays it once the bug is fixed.
    """
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return ErrorKind.TRANSIENT
    return ErrorKind.PERMANENT


class ConfigError(ValueError):
    """A setting or the pipeline file is wrong; the message names it. Raised before any connection.

    The CLI prints it as one line and exits 2 (no traceback): nothing a retry or restart could fix.
    """
