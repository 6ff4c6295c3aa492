"""The fleet supervisor: N worker processes per stage on one machine (`darkroom fleet up | status`).

- spec.py: `--workers resize=1..3,ingest=1` → per-stage bounds, or one worker of every stage needed;
- supervisor.py: starts, restarts (with backoff), scales (by consumer lag) and stops workers;
- lag.py: consumer lag and progress of a stage's group, from Kafka;
- state.py: the state file the supervisor writes and `fleet status` reads;
- dead_letters.py: dead letters per stage, for status;
- cli.py: the `darkroom fleet` command group.
"""

from operations.fleet.spec import StageSpec, default_workers, parse_workers
from operations.fleet.supervisor import RestartPolicy, ScalePolicy, Supervisor

__all__ = ["RestartPolicy", "ScalePolicy", "StageSpec", "Supervisor", "default_workers", "parse_workers"]
