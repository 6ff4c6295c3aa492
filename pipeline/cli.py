"""The `darkroom` command. Commands of other packages plug in as `darkroom.commands` entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

import click
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import ValidationError
from pydantic_settings import SettingsError

from pipeline.errors import ConfigError
from pipeline.kafka_config import admin_config
from pipeline.logs import configure_logging
from pipeline.settings import Settings
from pipeline.topics import apply_plan, installed_topic_specs, plan_topics
from pipeline.worker import canonical_stage, run_worker

COMMAND_ENTRY_POINTS = "darkroom.commands"


class ConfigurationError(click.ClickException):
    """A wrong setting or pipeline file: one line naming it, exit status 2, no traceback."""

    exit_code = 2

    def format_message(self) -> str:
        return f"configuration: {self.message}"


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each invalid setting by its environment variable (values left out: they may be secrets)."""
    problems = []
    for err in exc.errors():
        var = "DARKROOM_" + "__".join(str(part).upper() for part in err["loc"])
        problems.append(f"{var}: {err['msg']}")
    return "; ".join(problems)


class _PluginGroup(click.Group):
    """Loads plugged-in commands lazily, so `darkroom worker` does not import the dev stack.

    Configuration errors of any command (settings, the pipeline file, Kafka security) become one
    line and exit status 2: they are raised before any connection is tried, and no restart fixes them.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            raise ConfigurationError(describe_settings_error(exc)) from None
        except SettingsError as exc:  # e.g. DARKROOM_KAFKA__EXTRA that is not JSON
            cause = f" ({exc.__cause__})" if exc.__cause__ else ""
            raise ConfigurationError(f"{exc}{cause}; nested settings given as JSON must be valid JSON") from None
        except ConfigError as exc:
            raise ConfigurationError(str(exc)) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(ep.name for ep in entry_points(group=COMMAND_ENTRY_POINTS))})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for ep in entry_points(group=COMMAND_ENTRY_POINTS, name=cmd_name):
            try:
                loaded: click.Command = ep.load()
            except ModuleNotFoundError as exc:
                # e.g. `bench` in the runtime image, which leaves the benchmark harness out.
                raise click.UsageError(f"`darkroom {cmd_name}` is not installed here ({exc.name} is missing)") from None
            return loaded
        return None


@click.group(cls=_PluginGroup)
@click.version_option(package_name="darkroom", message="%(prog)s %(version)s")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING (default: DARKROOM_LOG_LEVEL or WARNING).")
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """darkroom: photos in, renditions out, over Kafka and S3.

    Settings come from DARKROOM_* environment variables (see README, "Settings").
    """
    settings = Settings()
    configure_logging(log_level or settings.log_level, settings.log_format)
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
@click.option("--partitions", type=int, default=None, help="Partitions per topic (never shrinks; default DARKROOM_TOPICS__PARTITIONS).")
@click.option("--apply", "apply_", is_flag=True, help="Make the changes; without it only print them.")
@click.pass_obj
def topics_ensure(settings: Settings, partitions: int | None, apply_: bool) -> None:
    """Show what the topics need (create, grow partitions, set configs); change them only with --apply.

    A config an operator set on a topic that differs from the spec is reported as drift and never reverted.
    """
    specs = installed_topic_specs(settings.topics, partitions)
    try:
        admin = AdminClient(admin_config(settings))
        plan = plan_topics(admin, specs)
        for line in plan.lines():
            click.echo(line)
        if not plan.changes:
            click.echo(f"nothing to change ({len(specs)} topics match)")
            return
        if not apply_:
            click.echo("dry run: nothing changed; run again with --apply to make these changes")
            return
        report = apply_plan(admin, plan)
    except KafkaException as exc:
        raise click.ClickException(
            f"Kafka at {settings.kafka.bootstrap_servers} failed: {exc}. Is it running? (`darkroom dev up`)"
        ) from exc
    for label, names in (("created", report.created), ("grown", report.grown), ("reconfigured", report.reconfigured)):
        if names:
            click.echo(f"{label}: {', '.join(names)}")
