"""Unit tests build stages from `Settings()`: give them the dev stack's S3 keys (never a default of the settings)."""

from __future__ import annotations

import os

from pipeline.settings import DevStackSettings

_dev = DevStackSettings()
os.environ.setdefault("DARKROOM_STORAGE__ACCESS_KEY", _dev.s3_access_key)
os.environ.setdefault("DARKROOM_STORAGE__SECRET_KEY", _dev.s3_secret_key.get_secret_value())
# No instance-metadata probe from a developer's machine when a test clears the keys on purpose.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
