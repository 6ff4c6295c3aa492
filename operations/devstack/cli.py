"""``darkroom dev``: run the local stack (Kafka + versitygw) without Docker."""

from __future__ import annotations

import shlex
import time

import click
from rich.console import Console
from rich.table import Table

from operations.devstack.processes import StackError
from operations.devstack.stack import SERVICES, DevStack, ServiceName, ServiceStatus, client_env
from pipeline.settings import Settings

# Diagnostics to stderr so `darkroom dev logs kafka > file` stays clean.
_err = Console(stderr=True)


def _stack() -> DevStack:
    # Settings are read at call time, so DARKROOM_* variables of this invocation apply.
    return DevStack()


def _print_status(statuses: dict[str, ServiceStatus]) -> None:
    table = Table(title="darkroom dev stack", title_justify="left")
    for column in ("service", "state", "pid", "port", "healthy", "detail"):
        table.add_column(column)
    for st in statuses.values():
        state = f"[green]{st.state}[/]" if st.state == "running" else f"[red]{st.state}[/]"
        healthy = "[green]yes[/]" if st.healthy else "[red]no[/]"
        table.add_row(st.name, state, str(st.pid or "-"), str(st.port), healthy, st.detail)
    Console().print(table)


@click.group("dev")
def dev_group() -> None:
    """Local stack without Docker: Kafka (KRaft) and versitygw (S3), data under settings.dev.data_dir."""


@dev_group.command("up")
def up_command() -> None:
    """Start Kafka, versitygw and Mailpit (building/downloading on first use), ensure topics and bucket."""
    stack = _stack()
    for warning in stack.settings_warnings():
        _err.print(f"[yellow]warning:[/] {warning}")
    started = time.monotonic()
    try:
        report = stack.up(echo=lambda msg: _err.print(msg))
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    took = time.monotonic() - started
    if report.started:
        _err.print(f"started {', '.join(report.started)} in {took:.1f} s (data in {stack.data_dir})")
    else:
        _err.print(f"already running (checked in {took:.1f} s)")
    if report.topics_created:
        _err.print(f"created topics: {', '.join(report.topics_created)}")
    if report.bucket_created:
        _err.print(f"created bucket {stack.settings.storage.bucket}")
    _print_status(stack.status())
    _err.print('commands against this stack need its keys: eval "$(darkroom dev env)"')


@dev_group.command("env")
def env_command() -> None:
    """Print the environment for darkroom commands against this stack: eval "$(darkroom dev env)"."""
    for name, value in client_env(Settings()).items():
        click.echo(f"export {name}={shlex.quote(value)}")


@dev_group.command("down")
def down_command() -> None:
    """Stop Kafka, versitygw and Mailpit (their data stays in the data dir)."""
    try:
        stopped = DevStack().down()
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    _err.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@dev_group.command("status")
def status_command() -> None:
    """Show each service: running/stopped, pid, port, healthy. Exit code 1 unless all are healthy."""
    statuses = _stack().status()
    _print_status(statuses)
    if not all(st.healthy for st in statuses.values()):
        raise SystemExit(1)


@dev_group.command("logs")
@click.argument("service", type=click.Choice(SERVICES), required=False)
@click.option("-n", "--lines", type=click.IntRange(min=1), default=50, show_default=True, help="Lines to show.")
def logs_command(service: ServiceName | None, lines: int) -> None:
    """Print the last lines of a service's log (both services if none is given)."""
    stack = _stack()
    for name in (service,) if service else SERVICES:
        path = stack.log_path(name)
        if service is None:
            click.echo(f"==> {name}: {path} <==")
        if not path.exists():
            click.echo(f"(no log yet at {path}; run `darkroom dev up`)", err=True)
            continue
        for line in stack.logs(name, lines):
            click.echo(line)
