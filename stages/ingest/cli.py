"""``darkroom reconcile``: emit `file.uploaded` for originals whose notification was lost."""

from __future__ import annotations

import click
from confluent_kafka import KafkaException

from pipeline.kafka_config import producer_config
from pipeline.publisher import Publisher
from pipeline.settings import Settings
from pipeline.topics import TopicNames
from stages.ingest.reconciler import reconcile
from storage.errors import StorageError
from storage.factory import open_store


@click.command("reconcile")
@click.option("--grace", "grace_s", default=60.0, show_default=True,
              help="Leave originals younger than this many seconds to the notification path.")
@click.pass_obj
def reconcile_command(settings: Settings, grace_s: float) -> None:
    """Announce originals whose current version has no `file.uploaded` on `files`, and deletions never announced."""
    publisher = Publisher(producer_config(settings), settings.worker.delivery_timeout_s, TopicNames(settings.topics.prefix))
    try:
        report = reconcile(open_store(settings.storage), publisher, settings, grace_s)
    except StorageError as exc:
        raise click.ClickException(f"{exc}") from exc
    except KafkaException as exc:
        raise click.ClickException(
            f"Kafka at {settings.kafka.bootstrap_servers} failed: {exc}. Is it running? (`darkroom dev up`)"
        ) from exc
    finally:
        publisher.close()
    click.echo(
        f"originals: {report.listed}; already ingested: {report.already_known}; "
        f"too recent: {report.too_recent}; emitted: {len(report.emitted)}; deleted: {len(report.deleted)}; "
        f"refused keys: {len(report.invalid_keys)}"
    )
    for file_id in report.emitted:
        click.echo(f"emitted file.uploaded for {file_id}")
    for file_id in report.deleted:
        click.echo(f"emitted file.deleted for {file_id}")
