"""`python -m pipeline` is the `darkroom` command (handy where the script is not on PATH)."""

from pipeline.cli import main

main()
