"""The operations page: per stage workers, lag, photos/s and dead letters, with redrive.

The numbers are those of `darkroom fleet status` (found through the `darkroom.status` entry point,
since `operations/` builds on this package and not the other way round) and the letters those of
`darkroom dlq` (`pipeline.dlq_tools`): the page shows what the CLI shows, from the same code.
Redrive goes through the same transactional `redrive`, so a letter is redriven at most once
whichever of the two did it. Studio token required, like the studio.
"""

from __future__ import annotations

from collections import Counter
from importlib.metadata import entry_points
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.dlq_tools import format_time, read_letters, redrive, select
from pipeline.settings import Settings
from web.context import context, json_body, page, studio_only

STATUS_ENTRY_POINTS = "darkroom.status"
_LETTERS_TIMEOUT_S = 10.0


def fleet_reports(settings: Settings) -> dict[str, Any]:
    """Every registered status report by name (None: nothing to report, e.g. no fleet ever ran here)."""
    reports: dict[str, Any] = {}
    for ep in entry_points(group=STATUS_ENTRY_POINTS):
        try:
            reports[ep.name] = ep.load()(settings)
        except Exception as exc:  # the page shows what it can with a part of the platform down
            reports[ep.name] = {"error": f"{type(exc).__name__}: {exc}"}
    return reports


def letters_report(settings: Settings) -> dict[str, Any]:
    """Open dead letters (newest first) and their count per stage."""
    try:
        letters = select(read_letters(settings, _LETTERS_TIMEOUT_S))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "letters": [], "perStage": {}}
    rows = [{"id": x.id, "stage": x.letter.stage, "errorClass": x.letter.error_class.rsplit(".", 1)[-1],
             "reason": x.letter.error_message, "topic": x.letter.topic, "attempts": x.letter.attempts,
             "key": (x.letter.key or b"").decode(errors="replace"), "at": format_time(x.timestamp_ms)}
            for x in reversed(letters)]
    return {"letters": rows, "perStage": dict(Counter(x.letter.stage or "?" for x in letters)), "error": None}


@studio_only
async def ops_page(request: Request) -> Response:
    return page("ops", "darkroom · operations", {})


@studio_only
async def ops_status(request: Request) -> Response:
    """GET /api/ops: fleet status and open dead letters."""
    settings = context(request).settings
    reports = await run_in_threadpool(fleet_reports, settings)
    letters = await run_in_threadpool(letters_report, settings)
    return JSONResponse({"fleet": reports.get("fleet"), "deadLetters": letters})


@studio_only
async def ops_redrive(request: Request) -> Response:
    """POST /api/ops/redrive {ids: [...]}: redrive these open letters (all of them, in one transaction)."""
    settings = context(request).settings
    ids = [str(i) for i in (await json_body(request)).get("ids") or []]
    if not ids:
        return JSONResponse({"error": "name the letters to redrive: {\"ids\": [\"P:O\", ...]}"}, status_code=422)

    def run() -> list[dict[str, Any]]:
        chosen = select(read_letters(settings, _LETTERS_TIMEOUT_S), ids=ids)
        missing = sorted(set(ids) - {x.id for x in chosen})
        if missing:
            raise ValueError(f"not open dead letters: {', '.join(missing)}")
        return [{"id": r.id, "topic": r.topic, "partition": r.partition, "offset": r.offset}
                for r in redrive(settings, chosen)]

    try:
        done = await run_in_threadpool(run)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    return JSONResponse({"redriven": done})


routes = [
    Route("/ops", ops_page),
    Route("/api/ops", ops_status),
    Route("/api/ops/redrive", ops_redrive, methods=["POST"]),
]
