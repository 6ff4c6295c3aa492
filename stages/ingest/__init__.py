"""The ingest stage: store notifications → `file.uploaded`, and the reconciler that finds what notifications lost."""

from stages.ingest.cli import reconcile_command
from stages.ingest.reconcile_stage import RECONCILE_TICKS, ReconcileStage
from stages.ingest.reconciler import ReconcileReport, known_uploads, recent_activity, reconcile
from stages.ingest.stage import IngestStage, build_stage, uploaded_event

__all__ = [
    "IngestStage",
    "RECONCILE_TICKS",
    "ReconcileStage",
    "ReconcileReport",
    "build_stage",
    "known_uploads",
    "reconcile",
    "reconcile_command",
    "recent_activity",
    "uploaded_event",
]
