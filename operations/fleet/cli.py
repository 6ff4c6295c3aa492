"""`darkroom fleet up | status`: run every stage's workers on this machine, and look at them."""

from __future__ import annotations

import fcntl
import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from operations.fleet.dead_letters import count_dead_letters
from operations.fleet.lag import LagProbe, consumer_factory
from operations.fleet.spec import StageSpec, default_workers, fuse_specs, parse_workers
from operations.fleet.state import (
    FleetState,
    age,
    pid_alive,
    read_state,
    state_path,
    worker_live,
    worker_ready,
)
from operations.fleet.supervisor import (
    LagMonitor,
    LivenessMonitor,
    RestartPolicy,
    ScalePolicy,
    Supervisor,
    free_port,
    terminate_orphans,
)
from pipeline.contracts.renditions import PipelineConfigError, load_rendition_graph
from pipeline.fusion import fusable_stages
from pipeline.kafka_config import consumer_config
from pipeline.settings import Settings
from pipeline.topics import TopicNames
from pipeline.worker import build_stage, canonical_stage, group_id, stage_factories

log = logging.getLogger(__name__)


@click.group("fleet")
def fleet_group() -> None:
    """Run and inspect a fleet of workers on this machine (N per stage, restarted, scaled on lag)."""


@fleet_group.command("up")
@click.option("--workers", "workers_text", default=None,
              help="Workers per stage: STAGE=N or STAGE=MIN..MAX (scaled on lag), comma-separated, "
                   "e.g. ingest=1,resize=1..3. Default: one worker of every stage the pipeline file needs, "
                   "the business consumers and the reconciler.")
@click.option("--lag-per-worker", default=50, show_default=True,
              help="Add a worker while the stage's lag exceeds this many messages per worker.")
@click.option("--idle", "idle_s", default=30.0, show_default=True, help="Remove a worker after this many seconds without lag.")
@click.option("--cooldown", "cooldown_s", default=10.0, show_default=True, help="Seconds between two scaling steps of a stage.")
@click.option("--probe-interval", "probe_s", default=2.0, show_default=True, help="Seconds between two lag probes.")
@click.option("--restart-backoff", "backoff_s", default=1.0, show_default=True,
              help="First restart delay of a crashed worker; doubles per quick crash, up to 30 s.")
@click.option("--liveness-interval", "live_s", default=5.0, show_default=True,
              help="Seconds between two /health/live probes of each worker (0: never probe).")
@click.option("--liveness-failures", "live_failures", default=3, show_default=True, type=click.IntRange(min=1),
              help="A worker failing this many liveness probes in a row is killed and restarted.")
@click.option("--fuse/--no-fuse", default=True, show_default=True,
              help="Run the image stages listed as one fused stage (resize+thumbnail+watermark: derived renditions "
                   "from the parent in memory), with the largest of their worker counts.")
@click.pass_obj
def up_command(settings: Settings, workers_text: str | None, lag_per_worker: int, idle_s: float, cooldown_s: float,
               probe_s: float, backoff_s: float, live_s: float, live_failures: int, fuse: bool) -> None:
    """Run the fleet until Ctrl-C or SIGTERM, then drain every worker and exit.

    Worker logs: <data dir>/logs/fleet/STAGE-N.log. State for `darkroom fleet status`:
    <data dir>/fleet/state.json.
    """
    if workers_text is None:
        try:
            workers_text = ",".join(f"{s.stage}=1" for s in default_workers(
                stage_factories(), load_rendition_graph(settings.pipeline_file)))
        except PipelineConfigError as exc:
            raise click.ClickException(f"{exc}; fix DARKROOM_PIPELINE_FILE or give --workers") from exc
    try:
        specs = planned_specs(workers_text, fuse)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--workers") from exc
    path = state_path(settings.dev.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One supervisor per data dir: a second one would start a second set of workers.
    lock = (path.parent / "supervisor.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        previous = read_state(path)
        pid = previous.supervisor_pid if previous else "?"
        raise click.ClickException(f"a fleet is already running for {path.parent} (supervisor pid {pid})") from exc
    orphans = terminate_orphans(read_state(path))
    if orphans:
        click.echo(f"stopped {len(orphans)} worker(s) left by a previous supervisor: {orphans}", err=True)

    restart_timeout = settings.worker.drain_timeout_s + 15.0
    supervisor = Supervisor(
        specs,
        log_dir=settings.dev.data_dir.expanduser().resolve() / "logs" / "fleet",
        port_picker=lambda: free_port(settings.worker.http_host),
        state_file=path,
        scale=ScalePolicy(lag_per_worker=lag_per_worker, idle_s=idle_s, cooldown_s=cooldown_s, probe_interval_s=probe_s),
        restart=RestartPolicy(initial_backoff_s=backoff_s, stop_timeout_s=restart_timeout,
                              unhealthy_after=live_failures),
    )
    probe = lag_probe(settings, list(supervisor.specs))
    monitor = LagMonitor(probe, list(supervisor.specs), probe_s).start()
    host = settings.worker.http_host
    liveness = (LivenessMonitor(lambda: supervisor.live_targets, lambda port: worker_live(host, port), live_s).start()
                if live_s > 0 else None)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        click.echo(f"{signal.Signals(signum).name}: stopping the fleet (workers drain, up to "
                   f"{restart_timeout:.0f}s)...", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    summary = ", ".join(f"{s.stage}={s.minimum}" + (f"..{s.maximum}" if s.scales else "") for s in specs)
    click.echo(f"fleet up: {summary}; `darkroom fleet status` shows it; Ctrl-C stops it", err=True)
    try:
        supervisor.run(stop, monitor, liveness=liveness)
    finally:
        monitor.close()
        if liveness is not None:
            liveness.close()
        probe.close()
    click.echo("fleet stopped", err=True)


def planned_specs(workers_text: str, fuse: bool = True) -> list[StageSpec]:
    """The stages `fleet up --workers` runs: parsed, fused unless `fuse` is off, every name installed (ValueError)."""
    specs = parse_workers(workers_text)
    if fuse:
        specs = fuse_specs(specs, fusable_stages())
    # Canonical names (fused stages sorted): the worker's consumer group is darkroom.<that name>.
    return [StageSpec(canonical_stage(s.stage), s.minimum, s.maximum) for s in specs]


def _is_stage(name: str) -> bool:
    try:
        canonical_stage(name)
    except ValueError:
        return False
    return True


def lag_probe(settings: Settings, stages: list[str]) -> LagProbe:
    """A lag probe for the groups of `stages`; each stage is built once to learn which topics it reads."""
    topics: dict[str, tuple[str, ...]] = {}
    for name in stages:
        stage = build_stage(name, settings)
        try:
            topics[group_id(name)] = tuple(TopicNames(settings.topics.prefix)(t) for t in stage.topics)
        finally:
            stage.close()
    # Groups are keyed by their unprefixed names here; the consumers read the deployment's (prefixed) ones.
    return LagProbe(consumer_factory(lambda group: consumer_config(settings, settings.topics.prefix + group)), topics)


@fleet_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--no-dlq", is_flag=True, help="Skip counting dead letters (reads the whole DLQ topic).")
@click.pass_obj
def status_command(settings: Settings, as_json: bool, no_dlq: bool) -> None:
    """Workers, lag, throughput and dead letters per stage of the fleet of this data dir."""
    state = read_state(state_path(settings.dev.data_dir))
    if state is None:
        raise click.ClickException(
            f"no fleet state in {state_path(settings.dev.data_dir).parent}; start one with `darkroom fleet up`"
        )
    report = build_status(settings, state, count_dlq=not no_dlq)
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    _print_status(report)


def build_status(settings: Settings, state: FleetState, count_dlq: bool = True) -> dict[str, Any]:
    """The status report: the supervisor's state file, refreshed with live lag, health and dead letters."""
    running = state.state != "stopped" and pid_alive(state.supervisor_pid)
    probe = lag_probe(settings, [s for s in state.stages if _is_stage(s)])
    dlq: dict[str, int] | None = None
    dlq_error = None
    if count_dlq:
        try:
            dlq = count_dead_letters(settings)
        except Exception as exc:  # status must show what it can even with the broker down
            dlq_error = f"{type(exc).__name__}: {exc}"
    stages: dict[str, Any] = {}
    for name, stage in state.stages.items():
        lag = probe.group_lag(group_id(name))
        workers = []
        for w in stage.workers:
            alive = running and pid_alive(w.pid)
            workers.append({
                "slot": w.slot, "pid": w.pid, "port": w.port, "state": w.state if alive or w.pid is None else "gone",
                "uptime": age(w.started_at) if alive else "-", "restarts": w.restarts,
                "ready": worker_ready(settings.worker.http_host, w.port) if alive and w.port else None, "log": w.log,
            })
        stages[name] = {
            "min": stage.minimum, "max": stage.maximum, "workers": workers,
            "running": sum(1 for w in workers if w["state"] == "running"),
            "lag": lag.total if lag.error is None else stage.lag,
            "lag_error": lag.error,
            "throughput_per_s": stage.throughput if running else None,
            "dead_letters": (dlq or {}).get(name, 0) if dlq is not None else None,
        }
    probe.close()
    return {
        "supervisor": {"pid": state.supervisor_pid, "running": running, "state": state.state if running else "stopped",
                       "up": age(state.started_at) if running else "-", "updated": age(state.updated_at) + " ago"},
        "stages": stages, "dlq_error": dlq_error, "history": state.history[-10:],
    }



def _print_status(report: dict[str, Any]) -> None:
    console = Console()
    sup = report["supervisor"]
    console.print(f"supervisor pid {sup['pid']}: [bold]{sup['state']}[/bold], up {sup['up']} (state updated {sup['updated']})")
    table = Table(title="darkroom fleet")
    for col in ("stage", "workers", "bounds", "lag", "msg/s", "dead letters", "pids (port, ready)"):
        table.add_column(col)
    for name, st in report["stages"].items():
        pids = ", ".join(
            f"{w['pid']} ({w['port']}, {'ready' if w['ready'] else 'not ready'})" if w["state"] == "running"
            else f"#{w['slot']} {w['state']}"
            for w in st["workers"]
        )
        table.add_row(
            name, str(st["running"]), f"{st['min']}..{st['max']}",
            "?" if st["lag"] is None else str(st["lag"]),
            "-" if st["throughput_per_s"] is None else f"{st['throughput_per_s']:.1f}",
            "?" if st["dead_letters"] is None else str(st["dead_letters"]), pids or "-",
        )
    console.print(table)
    if report["dlq_error"]:
        console.print(f"[yellow]dead letters not counted: {report['dlq_error']}[/yellow]")
    for line in report["history"]:
        console.print(f"[dim]{line}[/dim]")


def state_file(settings: Settings) -> Path:
    """Where the fleet of these settings keeps its state (for tests and scripts)."""
    return state_path(settings.dev.data_dir)
