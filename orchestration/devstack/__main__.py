"""``python -m orchestration.devstack up|down|status|logs``: the dev CLI without the ``darkroom`` entry point."""

from orchestration.devstack.cli import dev_group

if __name__ == "__main__":
    dev_group(prog_name="python -m orchestration.devstack")
