"""The fleet's status as data, for the operations page of `darkroom web` (entry point `darkroom.status`)."""

from __future__ import annotations

from typing import Any

from operations.fleet.cli import build_status
from operations.fleet.state import read_state, state_path
from pipeline.settings import Settings


def fleet_report(settings: Settings) -> dict[str, Any] | None:
    """`darkroom fleet status --json --no-dlq` of this data dir's fleet, or None when no fleet ever ran here.

    Dead letters are left out: the operations page reads the letters themselves (to list and redrive them).
    """
    state = read_state(state_path(settings.dev.data_dir))
    return None if state is None else build_status(settings, state, count_dlq=False)
