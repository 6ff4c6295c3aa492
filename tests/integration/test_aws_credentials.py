"""A worker with no S3 keys in its settings takes them the standard AWS way, and processes a photo.

The keys are the dev stack's, given once as AWS environment variables and once as a profile of a
shared credentials file; DARKROOM_STORAGE__ACCESS_KEY/SECRET_KEY are removed from the worker's environment.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from pipeline.contracts.topics import FILES
from pipeline.settings import Settings
from storage import ObjectStore
from storage.upload import upload_files
from tests.integration.conftest import make_photos
from tests.integration.helpers import await_processed

pytestmark = pytest.mark.integration

NO_DARKROOM_KEYS = {"DARKROOM_STORAGE__ACCESS_KEY": None, "DARKROOM_STORAGE__SECRET_KEY": None,
                    "AWS_EC2_METADATA_DISABLED": "true"}


def _process_one(start_worker, watch, store: ObjectStore, folder: Path, shoot_id: str, seed: int, **env: str | None) -> None:
    files = watch(FILES)
    resize = start_worker("resize", **NO_DARKROOM_KEYS, **env)
    ids = {r.file_id for r in upload_files(store, make_photos(folder, 1, seed=seed, sizes=[(1200, 800)]), shoot_id)}
    await_processed(files, ids, timeout_s=180)
    resize.signal(signal.SIGTERM)
    assert resize.wait() == 0


def test_keys_from_the_aws_environment_variables(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str
) -> None:
    start_worker("ingest")
    _process_one(start_worker, watch, store, photo_dir / "aws-env", shoot_id, seed=141,
                 AWS_ACCESS_KEY_ID=settings.dev.s3_access_key,
                 AWS_SECRET_ACCESS_KEY=settings.dev.s3_secret_key.get_secret_value())


@pytest.mark.parametrize("client", ["minio", "boto3"])
def test_keys_from_a_profile_of_a_shared_credentials_file(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str, tmp_path: Path,
    client: str,
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n"
        f"[darkroom-dev]\naws_access_key_id = {settings.dev.s3_access_key}\n"
        f"aws_secret_access_key = {settings.dev.s3_secret_key.get_secret_value()}\n"
    )
    start_worker("ingest")
    _process_one(start_worker, watch, store, photo_dir / f"aws-profile-{client}", shoot_id, seed=142,
                 AWS_SHARED_CREDENTIALS_FILE=str(credentials), AWS_CONFIG_FILE=str(tmp_path / "absent"),
                 AWS_PROFILE="darkroom-dev", DARKROOM_STORAGE__CLIENT=client)
