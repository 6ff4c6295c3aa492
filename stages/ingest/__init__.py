"""The ingest stage: store notifications → `file.uploaded`, and the reconciler that finds what notifications lost."""

from stages.ingest.cli import reconcile_command
from stages.ingest.reconciler import ReconcileReport, known_uploads, reconcile
from stages.ingest.stage import IngestStage, build_stage, uploaded_event

__all__ = [
    "IngestStage",
    "ReconcileReport",
    "build_stage",
    "known_uploads",
    "reconcile",
    "reconcile_command",
    "uploaded_event",
]
