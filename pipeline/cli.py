"""The `darkroom` command. Commands of other packages plug in as `darkroom.commands` entry points."""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

import click
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from pipeline.kafka_config import admin_config
from pipeline.settings import Settings
from pipeline.topics import ensure_topics, installed_topic_specs
from pipeline.worker import canonical_stage, run_worker

COMMAND_ENTRY_POINTS = "darkroom.commands"


class _PluginGroup(click.Group):
    """Loads plugged-in commands lazily, so `darkroom worker` does not import the dev stack."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(ep.name for ep in entry_points(group=COMMAND_ENTRY_POINTS))})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for ep in entry_points(group=COMMAND_ENTRY_POINTS, name=cmd_name):
            loaded: click.Command = ep.load()
            return loaded
        return None


@click.group(cls=_PluginGroup)
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING (default: DARKROOM_LOG_LEVEL or WARNING).")
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """darkroom: photos in, renditions out, over Kafka and S3.

    Settings come from DARKROOM_* environment variables (see README, "Settings").
    """
    settings = Settings()
    logging.basicConfig(
        level=(log_level or settings.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = settings


@main.command()
@click.argument("stage")
@click.pass_obj
def worker(settings: Settings, stage: str) -> None:
    """Run one worker of STAGE (e.g. resize, ingest) until SIGTERM/Ctrl-C, then drain and commit.

    Image stages joined by commas (`resize,thumbnail,watermark`) run fused in one worker and one
    consumer group: derived renditions are made from the parent's pixels in memory.
    """
    try:
        stage = canonical_stage(stage)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="STAGE") from exc
    try:
        runner = run_worker(stage, settings)
    except KafkaException as exc:
        raise click.ClickException(
            f"Kafka at {settings.kafka.bootstrap_servers} failed: {exc}. Is it running? (`darkroom dev up`)"
        ) from exc
    s = runner.stats
    click.echo(
        f"{stage}: stopped; processed={s.processed} dead-lettered={s.dead_lettered} retried={s.retried} skipped={s.skipped}",
        err=True,
    )


@main.group()
def topics() -> None:
    """Kafka topics of ADR-009 (docs/ARCHITECTURE.md, "Events and keys")."""


@topics.command("ensure")
@click.option("--partitions", default=6, show_default=True, help="Partitions per topic (never shrinks).")
@click.pass_obj
def topics_ensure(settings: Settings, partitions: int) -> None:
    """Create missing topics, grow partitions, apply retention and cleanup policy. Idempotent."""
    try:
        report = ensure_topics(AdminClient(admin_config(settings)), installed_topic_specs(partitions))
    except KafkaException as exc:
        raise click.ClickException(
            f"Kafka at {settings.kafka.bootstrap_servers} failed: {exc}. Is it running? (`darkroom dev up`)"
        ) from exc
    for label, names in (("created", report.created), ("grown", report.grown),
                         ("reconfigured", report.reconfigured), ("unchanged", report.unchanged)):
        if names:
            click.echo(f"{label}: {', '.join(names)}")
