"""The ingest stage: store notifications → `file.uploaded` / `file.deleted`, and the reconciler that finds what notifications lost."""

from stages.ingest.cli import reconcile_command
from stages.ingest.reconcile_stage import RECONCILE_TICKS, ReconcileStage
from stages.ingest.reconciler import Announced, ReconcileReport, announced, recent_activity, reconcile
from stages.ingest.stage import IngestStage, build_stage, decode_record_key, deleted_event, uploaded_event

__all__ = [
    "Announced",
    "IngestStage",
    "RECONCILE_TICKS",
    "ReconcileStage",
    "ReconcileReport",
    "announced",
    "build_stage",
    "decode_record_key",
    "deleted_event",
    "reconcile",
    "reconcile_command",
    "recent_activity",
    "uploaded_event",
]
