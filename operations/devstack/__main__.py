"""``python -m operations.devstack up|down|status|logs``: the dev CLI without the ``darkroom`` entry point."""

from operations.devstack.cli import dev_group

if __name__ == "__main__":
    dev_group(prog_name="python -m operations.devstack")
