"""Topics belong to the operator: a worker told not to manage them, and `topics ensure` without
--apply, change nothing on the real cluster; with --apply, an operator's config is reported, not reverted.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from operations.samples import sample_jpeg
from pipeline.cli import main
from pipeline.contracts.events import FILE_PROCESSED
from pipeline.contracts.topics import FILES
from pipeline.kafka_config import admin_config, producer_config
from pipeline.publisher import Outgoing, Publisher
from pipeline.settings import Settings
from pipeline.topics import TopicNames
from pipeline.watch import TopicWatcher
from stages.ingest.stage import uploaded_event
from storage.keys import original_key

pytestmark = pytest.mark.integration


def _topics(admin: AdminClient) -> set[str]:
    return set(admin.list_topics(timeout=30).topics)


def _config(admin: AdminClient, topic: str) -> dict[str, str | None]:
    [fut] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    return {k: e.value for k, e in fut.result(timeout=30).items()}


def test_a_worker_with_topic_management_off_changes_nothing(settings: Settings, start_worker) -> None:
    admin = AdminClient(admin_config(settings))
    prefix = f"t{uuid.uuid4().hex[:8]}."
    before = _topics(admin)
    files_config = _config(admin, FILES)
    worker = start_worker("ingest", DARKROOM_TOPICS__PREFIX=prefix, DARKROOM_TOPICS__MANAGE="false")
    # Topics would be ensured before the health server starts; once it serves, the chance has passed.
    worker.wait_for_line(r"health and metrics on", 90)
    assert _topics(admin) == before
    assert _config(admin, FILES) == files_config


def test_topics_ensure_prints_a_plan_and_applies_only_with_apply(settings: Settings, stack,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    admin = AdminClient(admin_config(settings))
    prefix = f"t{uuid.uuid4().hex[:8]}."
    monkeypatch.setenv("DARKROOM_TOPICS__PREFIX", prefix)
    before = _topics(admin)

    planned = CliRunner().invoke(main, ["topics", "ensure"])
    assert planned.exit_code == 0, planned.output
    assert f"create {prefix}{FILES}" in planned.output and "dry run" in planned.output
    assert _topics(admin) == before

    applied = CliRunner().invoke(main, ["topics", "ensure", "--apply"])
    assert applied.exit_code == 0, applied.output
    assert f"{prefix}{FILES}" in _topics(admin)

    # An operator keeps `files` for 30 days on this deployment: ensure reports it and leaves it.
    month = str(30 * 24 * 3600 * 1000)
    entry = ConfigEntry("retention.ms", month, incremental_operation=AlterConfigOpType.SET)
    for fut in admin.incremental_alter_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, f"{prefix}{FILES}", incremental_configs=[entry])]
    ).values():
        fut.result(timeout=30)
    # The broker serves describe from its metadata log, which may trail the controller by a moment.
    deadline = time.monotonic() + 60
    while _config(admin, f"{prefix}{FILES}")["retention.ms"] != month:
        assert time.monotonic() < deadline, "the operator's retention never became visible"
        time.sleep(0.2)
    again = CliRunner().invoke(main, ["topics", "ensure", "--apply"])
    assert again.exit_code == 0, again.output
    assert f"drift {prefix}{FILES}: retention.ms={month}" in again.output
    assert _config(admin, f"{prefix}{FILES}")["retention.ms"] == month


def test_a_deployment_with_a_prefix_works_on_its_own_topics_and_group(
    settings: Settings, store, start_worker, monkeypatch: pytest.MonkeyPatch, shoot_id: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    monkeypatch.setenv("DARKROOM_TOPICS__PREFIX", prefix)
    assert CliRunner().invoke(main, ["topics", "ensure", "--apply"]).exit_code == 0
    mine = Settings()
    files = TopicWatcher(mine, FILES)  # reads `<prefix>files`
    try:
        start_worker("resize", DARKROOM_TOPICS__PREFIX=prefix, DARKROOM_TOPICS__MANAGE="false")
        photo = sample_jpeg(800, 600, 141_000)
        key = original_key(shoot_id, f"prefixed-{hashlib.sha256(photo).hexdigest()[:10]}", "jpg")
        store.put(key, photo, "image/jpeg")
        # The file id is what ingest makes of the key (#11), and every event of the photo is keyed by it.
        file_id, uploaded = uploaded_event(store.bucket, key, len(photo), hashlib.md5(photo).hexdigest(), "test")  # noqa: S324
        publisher = Publisher(producer_config(mine), names=TopicNames(prefix))
        try:
            publisher.publish_all([Outgoing.event(FILES, file_id, uploaded)])
        finally:
            publisher.close()
        files.until(lambda seen: any(s.event_type == FILE_PROCESSED and s.key == file_id.encode() for s in seen), 120)
    finally:
        files.close()
    admin = AdminClient(admin_config(settings))
    groups = {g.group_id for g in admin.list_consumer_groups().result(timeout=30).valid}
    assert f"{prefix}darkroom.resize" in groups
