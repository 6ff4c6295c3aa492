"""Which stages a fleet runs and how many workers each may have."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ITEM = re.compile(r"^(?P<stage>[a-z][a-z0-9_-]*)=(?P<min>\d+)(?:\.\.(?P<max>\d+))?$")


@dataclass(frozen=True)
class StageSpec:
    """A stage and its worker bounds: `minimum` always run, up to `maximum` while it lags."""

    stage: str
    minimum: int
    maximum: int

    @property
    def scales(self) -> bool:
        return self.maximum > self.minimum


def parse_workers(text: str) -> list[StageSpec]:
    """Parse `resize=2,ingest=1` (fixed counts) or `resize=1..3` (bounds for lag-based scaling).

    Raises ValueError with the offending item.
    """
    specs: dict[str, StageSpec] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"{item!r}: expected STAGE=N or STAGE=MIN..MAX, e.g. resize=1..3")
        low = int(match["min"])
        high = int(match["max"]) if match["max"] is not None else low
        if high < low or high < 1:
            raise ValueError(f"{item!r}: need 0 <= MIN <= MAX and MAX >= 1")
        if match["stage"] in specs:
            raise ValueError(f"{item!r}: stage {match['stage']} given twice")
        specs[match["stage"]] = StageSpec(match["stage"], low, high)
    if not specs:
        raise ValueError("no stage given, e.g. --workers ingest=1,resize=1..3")
    return list(specs.values())
