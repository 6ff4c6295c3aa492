"""Configuration errors come first and plainly: one line naming the setting or field, exit status 2."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kafka points at a port nobody listens on: reaching it would be reported as a Kafka error, not exit 2."""
    monkeypatch.setenv("DARKROOM_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{_closed_port()}")


def _one_line_error(result: object) -> str:
    output: str = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 2, output  # type: ignore[attr-defined]
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_an_invalid_setting_names_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKROOM_KAFKA__SECURITY_PROTOCOL", "SASL_TLS")
    line = _one_line_error(CliRunner().invoke(main, ["topics", "ensure"]))
    assert "DARKROOM_KAFKA__SECURITY_PROTOCOL" in line


def test_a_missing_pipeline_file_is_reported_before_kafka(no_broker: None, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setenv("DARKROOM_PIPELINE_FILE", str(tmp_path / "missing.yaml"))
    line = _one_line_error(CliRunner().invoke(main, ["worker", "resize"]))
    assert "DARKROOM_PIPELINE_FILE" in line and "Kafka" not in line


def test_an_invalid_pipeline_field_is_named(no_broker: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("renditions:\n  web:\n    stage: resize\n    long_edge: -5\n    format: jpeg\n")
    monkeypatch.setenv("DARKROOM_PIPELINE_FILE", str(path))
    line = _one_line_error(CliRunner().invoke(main, ["worker", "resize"]))
    assert "renditions.web.long_edge" in line


def test_sasl_without_a_password_is_a_configuration_error(no_broker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKROOM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DARKROOM_KAFKA__SASL_USERNAME", "worker")
    line = _one_line_error(CliRunner().invoke(main, ["worker", "ingest"]))
    assert "DARKROOM_KAFKA__SASL_PASSWORD" in line


def test_an_smtp_login_without_its_password_is_a_configuration_error(no_broker: None, monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("DARKROOM_ORCHESTRATION__DB_PATH", str(tmp_path / "o.sqlite"))
    monkeypatch.setenv("DARKROOM_ORCHESTRATION__SMTP_USERNAME", "mailer")
    line = _one_line_error(CliRunner().invoke(main, ["worker", "invite-sender"]))
    assert "DARKROOM_ORCHESTRATION__SMTP_PASSWORD" in line


def test_a_nested_setting_that_is_not_json_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKROOM_KAFKA__EXTRA", "{not json")
    line = _one_line_error(CliRunner().invoke(main, ["topics", "ensure"]))
    assert "kafka" in line and "JSON" in line
