"""`python -m web --data-dir DIR [--host H] [--port N]`: `darkroom web` for the dev stack of DIR.

The dev stack starts the web server this way so its command line names the data dir (how
`darkroom dev down` recognises its own process).
"""

from __future__ import annotations

import argparse
import os

from pipeline.cli import main as darkroom


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m web")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", default=None)
    args = parser.parse_args()
    os.environ["DARKROOM_DEV__DATA_DIR"] = args.data_dir
    extra = [a for pair in (("--host", args.host), ("--port", args.port)) if pair[1] for a in pair]
    darkroom(["--log-level", "INFO", "web", *extra])


if __name__ == "__main__":
    main()
