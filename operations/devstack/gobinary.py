"""A tool of the local stack built with `go install` (versitygw, Mailpit): pinned, built once, into our data dir."""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from operations.devstack.processes import StackError, require_tool

log = logging.getLogger(__name__)

GO_HINT = "install Go 1.24+ (https://go.dev/dl, or `apt-get install golang-go` / `brew install go`)"


@dataclass(frozen=True)
class GoBinary:
    """`module@version` built into `bin_dir/name`, with the version it was built at beside it.

    GOBIN is our data dir, so we never replace a binary of the same name someone else runs from
    GOPATH/bin; Go's module and build caches still make a rebuild take seconds.
    """

    name: str
    module: str
    bin_dir: Path
    setting: str  # the setting that pins the version, named in errors

    @property
    def binary(self) -> Path:
        return self.bin_dir / self.name

    @property
    def stamp(self) -> Path:
        return self.bin_dir / f"{self.name}.version"

    def installed_version(self) -> str | None:
        """Version recorded when the binary was built, or None if binary or stamp is missing."""
        if not self.binary.exists():
            return None
        try:
            return self.stamp.read_text().strip() or None
        except OSError:
            return None

    def install(self, version: str, timeout_s: float = 1800) -> bool:
        """``go install`` `version` unless it is already built; True if it was built now."""
        if self.installed_version() == version:
            return False
        go = require_tool("go", f"{GO_HINT}; it builds {self.name}.")
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        log.info("building %s %s with go install", self.name, version)
        self.stamp.unlink(missing_ok=True)
        result = subprocess.run(
            [go, "install", f"{self.module}@{version}"], env={**os.environ, "GOBIN": str(self.bin_dir)},
            capture_output=True, text=True, check=False, timeout=timeout_s,
        )
        if result.returncode != 0 or not self.binary.exists():
            raise StackError(
                f"`go install {self.module}@{version}` failed (is the Go module proxy reachable? is {self.setting} "
                f"right? is Go recent enough?):\n" + (result.stdout + result.stderr).strip()[-3000:]
            )
        self.stamp.write_text(version + "\n")
        return True

    def check_tools(self, version: str) -> None:
        """Raise StackError if Go is needed (binary missing or of another version) but not installed."""
        if self.installed_version() != version:
            require_tool("go", f"{GO_HINT}; it builds {self.name}.")
