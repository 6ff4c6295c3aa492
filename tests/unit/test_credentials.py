"""S3 credentials: the configured keys, else the standard AWS chain; none at all stops a worker at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.settings import StorageSettings
from storage.credentials import resolve_credentials
from storage.errors import StorageConfigError
from storage.s3_minio import BotocoreProvider

AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
            "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI", "DARKROOM_STORAGE__ACCESS_KEY", "DARKROOM_STORAGE__SECRET_KEY")


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No keys anywhere: no variables, empty AWS files, no instance metadata."""
    for var in AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def test_configured_keys_win(no_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    creds = resolve_credentials(StorageSettings(access_key="configured", secret_key="s"))  # type: ignore[arg-type]
    assert creds.access_key == "configured"


def test_without_keys_the_aws_environment_variables_are_used(no_credentials: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    frozen = BotocoreProvider(resolve_credentials(StorageSettings())).retrieve()
    assert (frozen.access_key, frozen.secret_key, frozen.session_token) == ("from-env", "env-secret", "token")


def test_without_keys_a_profile_is_used(no_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (no_credentials / "credentials").write_text(
        "[default]\naws_access_key_id = d\naws_secret_access_key = d\n\n[studio]\n"
        "aws_access_key_id = from-profile\naws_secret_access_key = p\n"
    )
    assert resolve_credentials(StorageSettings(profile="studio")).access_key == "from-profile"
    monkeypatch.setenv("AWS_PROFILE", "studio")
    assert resolve_credentials(StorageSettings()).access_key == "from-profile"


def test_half_configured_keys_are_a_configuration_error(no_credentials: Path) -> None:
    with pytest.raises(StorageConfigError, match="go together"):
        resolve_credentials(StorageSettings(access_key="only-the-id"))


def test_an_unknown_profile_is_a_configuration_error(no_credentials: Path) -> None:
    with pytest.raises(StorageConfigError, match="nope"):
        resolve_credentials(StorageSettings(profile="nope"))


def test_a_worker_with_no_credentials_at_all_stops_at_start_up(no_credentials: Path) -> None:
    result = CliRunner().invoke(main, ["worker", "resize"])
    assert result.exit_code == 2, result.output
    assert "no S3 credentials" in result.output and "AWS_ACCESS_KEY_ID" in result.output
    assert "Traceback" not in result.output
