"""S3 over https with a private CA (DARKROOM_STORAGE__CA_BUNDLE), for both adapters, against moto over TLS."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from pipeline.settings import StorageSettings
from storage import open_store
from storage.errors import StorageError
from tests.tls import ServerPki, make_server_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ServerPki:
    return make_server_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_endpoint(pki: ServerPki) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.chain, pki.key)
    server: BaseWSGIServer = make_server(
        "127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=True, ssl_context=context
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}"
    server.shutdown()


def _settings(endpoint: str, client: str, ca: Path | None) -> StorageSettings:
    return StorageSettings(
        endpoint_url=endpoint, client=client, ca_bundle=ca, bucket=f"ca-{client}",  # type: ignore[arg-type]
        access_key="testing", secret_key="testing", connect_timeout_s=2, read_timeout_s=5,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("client", ["minio", "boto3"])
def test_the_private_ca_makes_https_work(https_endpoint: str, pki: ServerPki, client: str) -> None:
    store = open_store(_settings(https_endpoint, client, pki.ca))
    store.ensure_bucket()
    store.put("originals/shoots/s/f.jpg", b"bytes")
    assert store.get("originals/shoots/s/f.jpg") == b"bytes"


@pytest.mark.parametrize("client", ["minio", "boto3"])
def test_without_the_ca_the_certificate_is_refused(https_endpoint: str, client: str) -> None:
    store = open_store(_settings(https_endpoint, client, None))
    with pytest.raises(StorageError) as caught:
        store.ping()
    assert "certificate" in str(caught.value).lower() or "ssl" in str(caught.value).lower(), caught.value


@pytest.mark.parametrize("client", ["minio", "boto3"])
def test_a_missing_ca_file_is_named(tmp_path: Path, client: str) -> None:
    with pytest.raises(StorageError, match="CA_BUNDLE"):
        open_store(_settings("https://127.0.0.1:1", client, tmp_path / "missing.pem"))
