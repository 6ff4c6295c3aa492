"""Both S3 adapters against one in-process moto server (no network beyond 127.0.0.1)."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from moto.server import ThreadedMotoServer

from pipeline.settings import StorageSettings
from storage import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StorageUnavailable,
    open_store,
    parse_original_key,
)
from storage.cli import upload_command
from storage.errors import classify
from storage.s3_boto import Boto3Store
from storage.s3_minio import MinioStore
from storage.upload import UploadResult, object_name_for, slugify, upload_files

CLIENTS = ["boto3", "minio"]
SECRET = "moto-secret-never-printed"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _settings(endpoint: str, client: str, bucket: str | None = None) -> StorageSettings:
    return StorageSettings(
        endpoint_url=endpoint,
        access_key="testing",
        secret_key=SECRET,  # type: ignore[arg-type]  # pydantic coerces str to SecretStr
        region="us-east-1",
        bucket=bucket or f"t-{uuid.uuid4().hex[:12]}",
        client=client,  # type: ignore[arg-type]
        connect_timeout_s=1.0,
        read_timeout_s=5.0,
    )


@pytest.fixture(params=CLIENTS)
def settings(request: pytest.FixtureRequest, moto_endpoint: str) -> StorageSettings:
    return _settings(moto_endpoint, request.param)


@pytest.fixture
def store(settings: StorageSettings) -> ObjectStore:
    s = open_store(settings)
    s.ensure_bucket()
    return s


def _raw_client(endpoint: str) -> object:
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


def _no_proxy_open(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.read()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_open_store_picks_the_configured_adapter(moto_endpoint: str) -> None:
    assert isinstance(open_store(_settings(moto_endpoint, "boto3")), Boto3Store)
    assert isinstance(open_store(_settings(moto_endpoint, "minio")), MinioStore)
    assert isinstance(open_store(_settings(moto_endpoint, "minio")), ObjectStore)


def test_put_get_head_exists(store: ObjectStore) -> None:
    data = b"\xff\xd8 not really a jpeg " * 100
    written = store.put("originals/shoots/s1/a.jpg", data, content_type="image/jpeg")
    assert written.size == len(data)
    assert written.etag == hashlib.md5(data).hexdigest()  # single PUT, unquoted

    assert store.get("originals/shoots/s1/a.jpg") == data
    info = store.head("originals/shoots/s1/a.jpg")
    assert info == ObjectInfo(
        key="originals/shoots/s1/a.jpg", size=len(data), etag=written.etag, last_modified=info.last_modified
    )
    assert info.last_modified.tzinfo is not None
    assert store.exists("originals/shoots/s1/a.jpg")
    assert not store.exists("originals/shoots/s1/missing.jpg")


def test_put_sends_content_type_and_metadata(store: ObjectStore, settings: StorageSettings) -> None:
    store.put("k.png", b"png", content_type="image/png", metadata={"original-name": "IMG_1.PNG"})
    head = _raw_client(settings.endpoint_url).head_object(Bucket=store.bucket, Key="k.png")  # type: ignore[attr-defined]
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"original-name": "IMG_1.PNG"}


def test_put_refuses_non_ascii_metadata(store: ObjectStore) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        store.put("k", b"x", metadata={"name": "Été.jpg"})


def test_large_object_is_one_put(store: ObjectStore) -> None:
    # Above minio's default 5 MiB part size: must still be a single PUT with an MD5 etag.
    data = bytes(6 * 1024 * 1024)
    assert store.put("big.bin", data).etag == hashlib.md5(data).hexdigest()
    assert store.get("big.bin") == data


def test_list_paginates_and_filters_by_prefix(settings: StorageSettings) -> None:
    store: ObjectStore = Boto3Store(settings, page_size=2) if settings.client == "boto3" else MinioStore(settings)
    store.ensure_bucket()
    keys = [f"renditions/shoots/s1/f{i}/web.jpg" for i in range(5)]
    for key in reversed(keys):
        store.put(key, key.encode())
    store.put("originals/shoots/s1/f0.jpg", b"other prefix")

    listed = list(store.list("renditions/shoots/s1/"))
    assert [o.key for o in listed] == keys
    assert [o.size for o in listed] == [len(k) for k in keys]
    assert all(o.etag == hashlib.md5(k.encode()).hexdigest() for o, k in zip(listed, keys))
    assert list(store.list("nothing/")) == []


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("gone.jpg", b"x")
    store.delete("gone.jpg")
    store.delete("gone.jpg")
    store.delete("never-existed.jpg")
    assert not store.exists("gone.jpg")


def test_presigned_url_serves_the_object(store: ObjectStore) -> None:
    data = uuid.uuid4().bytes * 50
    store.put("shared/p.jpg", data)
    url = store.presign_get("shared/p.jpg", expires_s=120)
    assert "X-Amz-Signature=" in url and SECRET not in url
    assert _no_proxy_open(url) == data


def test_ensure_bucket_twice_and_ping(settings: StorageSettings) -> None:
    store = open_store(settings)
    with pytest.raises(StorageError, match="does not exist") as excinfo:
        store.ping()
    assert not isinstance(excinfo.value, StorageUnavailable)  # missing bucket is permanent
    store.ensure_bucket()
    store.ensure_bucket()
    store.ping()


def test_missing_object_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match="nope.jpg") as excinfo:
        store.get("nope.jpg")
    assert excinfo.value.__cause__ is not None
    with pytest.raises(ObjectNotFound):
        store.head("nope.jpg")


@pytest.mark.parametrize("client", CLIENTS)
def test_connection_refused_is_unavailable_and_quick(client: str) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = open_store(_settings(endpoint, client, bucket="bkt"))
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as excinfo:
        store.get("originals/shoots/s/f.jpg")
    assert time.monotonic() - started < 5
    message = str(excinfo.value)
    assert endpoint in message and "is the S3 server running" in message
    assert SECRET not in message and SECRET not in repr(store)
    assert excinfo.value.__cause__ is not None
    with pytest.raises(StorageUnavailable):
        store.ping()


class _SlowDownHandler(BaseHTTPRequestHandler):
    """An S3 server that throttles every request."""

    # HTTP/1.1 so botocore's "Expect: 100-continue" on PUT is answered instead of timing out.
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b"" if self.command == "HEAD" else (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>"
        )
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture(scope="module")
def slowdown_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowDownHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("client", CLIENTS)
def test_throttling_is_unavailable(client: str, slowdown_endpoint: str) -> None:
    store = open_store(_settings(slowdown_endpoint, client, bucket="bkt"))
    with pytest.raises(StorageUnavailable, match="SlowDown|503"):
        store.get("k.jpg")
    with pytest.raises(StorageUnavailable):  # HEAD answers carry no body, only the status
        store.head("k.jpg")


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "SlowDown", StorageUnavailable),
        (500, "InternalError", StorageUnavailable),
        (400, "RequestTimeout", StorageUnavailable),
        (429, None, StorageUnavailable),
        (404, "NoSuchKey", ObjectNotFound),
        (403, "AccessDenied", StorageError),
        (400, "InvalidArgument", StorageError),
    ],
)
def test_classify(status: int, code: str | None, expected: type[StorageError]) -> None:
    error = classify(status=status, code=code, detail="d", op="GET", endpoint="http://e", bucket="b", key="k")
    assert type(error) is expected


def test_classify_missing_bucket_is_permanent() -> None:
    error = classify(status=404, code="NoSuchBucket", detail="d", op="GET", endpoint="http://e", bucket="b", key="k")
    assert type(error) is StorageError and "bucket 'b' does not exist" in str(error)


def test_slug_and_object_name() -> None:
    assert slugify("IMG_0001 (Copy)") == "img-0001-copy"
    name = object_name_for(Path("DSC 001.JPG"), b"abc", "s1")
    assert name == "dsc-001-" + hashlib.sha256(b"s1\0abc").hexdigest()[:10]
    # The same photo in another shoot is another object.
    assert object_name_for(Path("DSC 001.JPG"), b"abc", "s2") != name


def test_upload_files_is_idempotent(store: ObjectStore, tmp_path: Path) -> None:
    (tmp_path / "IMG_1.JPG").write_bytes(b"one")
    (tmp_path / "copy of img 1.jpg").write_bytes(b"one")
    (tmp_path / "two.png").write_bytes(b"two")
    (tmp_path / "notes.txt").write_text("ignored in a directory")
    done: list[UploadResult] = []

    first = upload_files(store, [tmp_path], "shoot-1", parallel=3, on_done=done.append)
    assert len(first) == 3 and len(done) == 3 and all(r.ok for r in first)
    refs = {r.path.name: parse_original_key(r.key) for r in first}
    assert refs["IMG_1.JPG"].ext == "jpg" and refs["IMG_1.JPG"].shoot_id == "shoot-1"
    assert refs["IMG_1.JPG"].file_id.startswith("img-1-")
    # The file id `darkroom upload` reports is the one ingest derives from the key.
    assert all(r.file_id == parse_original_key(r.key).file_id for r in first)
    assert store.get(first[0].key) == first[0].path.read_bytes()

    second = upload_files(store, [tmp_path / "IMG_1.JPG"], "shoot-1")
    assert second[0].key == next(r.key for r in first if r.path.name == "IMG_1.JPG")
    assert len(list(store.list("originals/shoots/shoot-1/"))) == 3


def test_upload_command(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    open_store(_settings(moto_endpoint, "boto3", bucket)).ensure_bucket()
    (tmp_path / "a.jpg").write_bytes(b"a" * 1000)
    monkeypatch.setenv("DARKROOM_STORAGE__ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("DARKROOM_STORAGE__BUCKET", bucket)
    result = CliRunner().invoke(upload_command, [str(tmp_path), "--shoot", "s1", "--parallel", "2"])
    assert result.exit_code == 0, result.output
    assert "uploaded 1/1 files" in result.output

    bad = CliRunner().invoke(upload_command, [str(tmp_path), "--shoot", "../etc"])
    assert bad.exit_code == 2 and "shoot id" in bad.output


def test_upload_command_unreachable_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.jpg").write_bytes(b"a")
    monkeypatch.setenv("DARKROOM_STORAGE__ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    result = CliRunner().invoke(upload_command, [str(tmp_path / "a.jpg"), "--shoot", "s1"])
    assert result.exit_code == 1
    assert "is the S3 server running" in result.output
