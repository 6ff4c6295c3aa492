"""The local stack without Docker: a real Kafka broker (KRaft) and versitygw (S3), as detached processes.

Python API::

    from operations.devstack import DevStack
    stack = DevStack()          # or DevStack(Settings(...)); everything derives from settings.dev
    stack.up()                  # idempotent; raises StackError with an actionable message
    stack.status()              # {"kafka": ServiceStatus(...), "s3": ServiceStatus(...)}
    stack.logs("kafka", 50)
    stack.down()

CLI: ``darkroom dev up | down | status | logs [kafka|s3] [-n N]`` (also ``python -m operations.devstack``).
"""

from operations.devstack.cli import dev_group
from operations.devstack.processes import StackError
from operations.devstack.stack import (
    DevStack,
    ServiceStatus,
    UpReport,
    client_env,
    ensure_bucket,
)

__all__ = ["DevStack", "ServiceStatus", "StackError", "UpReport", "client_env", "dev_group", "ensure_bucket"]
