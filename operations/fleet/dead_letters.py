"""Dead letters per stage, for `darkroom fleet status`: letters in the DLQ not yet redriven."""

from __future__ import annotations

from collections import Counter

from pipeline.dlq_tools import read_letters
from pipeline.settings import Settings


def count_dead_letters(settings: Settings, timeout_s: float = 10.0) -> dict[str, int]:
    """Open dead letters per stage. Raises TimeoutError if the topic cannot be read to its end in time."""
    return dict(Counter(letter.letter.stage or "?" for letter in read_letters(settings, timeout_s) if not letter.redriven))
