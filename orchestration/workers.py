"""Entry points of the business consumers (`darkroom.stages`): each runs with `darkroom worker NAME`."""

from __future__ import annotations

from orchestration.analytics import AnalyticsStage
from orchestration.consumer import OrchestrationStage
from orchestration.db import Database, db_path
from orchestration.gallery import GalleryStage
from orchestration.invite_sender import InviteSenderStage
from orchestration.invites import InvitesStage
from orchestration.mail import check_mail_settings
from orchestration.notifier import NotifierStage
from orchestration.relay import OutboxRelay
from orchestration.users import UsersStage
from pipeline.contracts.events import default_registry
from pipeline.contracts.renditions import load_rendition_graph
from pipeline.settings import Settings
from storage import open_store


def make_gallery(settings: Settings, db: Database, with_store: bool = True) -> GalleryStage:
    """The gallery stage; without a store (replay) it never deletes objects."""
    required = load_rendition_graph(settings.pipeline_file).names()
    store = open_store(settings.storage) if with_store else None
    return GalleryStage(default_registry(), db, settings, store, required)


def _running(stage: OrchestrationStage, settings: Settings) -> OrchestrationStage:
    # Attached, not started: the runner starts it (Stage.start), so merely building the stage (as
    # `fleet up` does to learn its topics) takes no relay lock and publishes nothing.
    stage.relay = OutboxRelay(stage, stage.db, settings)
    return stage


def build_users(settings: Settings) -> OrchestrationStage:
    return _running(UsersStage(default_registry(), Database(db_path(settings)), settings), settings)


def build_invites(settings: Settings) -> OrchestrationStage:
    return _running(InvitesStage(default_registry(), Database(db_path(settings)), settings), settings)


def build_invite_sender(settings: Settings) -> OrchestrationStage:
    check_mail_settings(settings)
    return _running(InviteSenderStage(default_registry(), Database(db_path(settings)), settings), settings)


def build_notifier(settings: Settings) -> OrchestrationStage:
    check_mail_settings(settings)
    return _running(NotifierStage(default_registry(), Database(db_path(settings)), settings), settings)


def build_gallery(settings: Settings) -> OrchestrationStage:
    return _running(make_gallery(settings, Database(db_path(settings))), settings)


def build_analytics(settings: Settings) -> OrchestrationStage:
    # No relay: analytics only counts, it publishes and mails nothing.
    return AnalyticsStage(default_registry(), Database(db_path(settings)), settings)
