"""`darkroom web` without Kafka or S3: tokens, routes, gallery links, access events, analytics, live items.

Starlette's TestClient drives the real app around a real SQLite read model, a fake store (presigned
links are strings) and a fake publisher (records what would go to Kafka).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient

from orchestration.analytics import AnalyticsStage, shoot_analytics
from orchestration.db import Database
from orchestration.gallery_links import gallery_token, gallery_url, invite_of_token
from pipeline.contracts.events import FileDownloaded, GalleryViewed, default_registry, event_message
from pipeline.dead_letter import DeadLetter
from pipeline.publisher import Outgoing
from pipeline.registry import Event
from pipeline.settings import Settings
from storage import PresignedUpload
from storage.keys import file_id_of
from web import WebContext, create_app
from web.access import COOKIE
from web.live import translate

TOKEN = "studio-secret-token"
SHOOT, INVITE = "wedding-1", "inv-abc"


class FakeStore:
    bucket = "b"

    def presign_get(self, key: str, expires_s: int = 3600, download_as: str | None = None) -> str:
        return f"http://s3.test/b/{key}?expires={expires_s}" + (f"&download={download_as}" if download_as else "")

    def presign_put(self, key: str, expires_s: int = 3600) -> PresignedUpload:
        return PresignedUpload(f"http://s3.test/b/{key}?X-Amz-Signature=s", "PUT", {}, key, expires_s)


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    def publish_all(self, messages: list[Outgoing]) -> None:
        self.sent.extend(messages)

    def types(self) -> list[str]:
        return [json.loads(m.value)["eventType"] for m in self.sent]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(dev={"data_dir": tmp_path / "data"}, web={"token": TOKEN, "link_secret": "k" * 32,  # type: ignore[arg-type]
                                                              "base_url": "https://photos.example"})


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = Database(tmp_path / "o.sqlite")
    with db.transaction() as tx:
        tx.execute("INSERT INTO invite_shoots VALUES (?,?,?,?,?,?)", (SHOOT, "Anna & Ben", "a@example.com", "u1", "c", "e"))
        tx.execute("INSERT INTO invites (invite_id, shoot_id, user_id, email, status, correlation_id, created_at)"
                   " VALUES (?,?,?,?,?,?,?)", (INVITE, SHOOT, "u1", "a@example.com", "sent", "c", "t"))
        tx.execute("INSERT INTO gallery_photos (file_id, shoot_id, status, correlation_id, updated_at, name, key,"
                   " version, shown_version) VALUES ('f1', ?, 'complete', 'c', 't', 'f1.jpg', ?, 'v1', 'v1')",
                   (SHOOT, f"originals/shoots/{SHOOT}/f1.jpg"))
        for name, ext in (("web", "jpg"), ("thumb", "webp"), ("proof", "jpg")):
            tx.execute("INSERT INTO gallery_renditions (file_id, rendition, shoot_id, key, width, height, bytes, format,"
                       " version) VALUES ('f1', ?, ?, ?, 400, 300, 1000, ?, 'v1')",
                       (name, SHOOT, f"renditions/shoots/{SHOOT}/f1/v1/{name}.{ext}", ext))
    return db


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(settings: Settings, db: Database, publisher: FakePublisher) -> TestClient:
    ctx = WebContext(settings, db, FakeStore(), publisher, None, TOKEN)  # type: ignore[arg-type]
    return TestClient(create_app(ctx), follow_redirects=False)


STUDIO_GETS = ["/", "/ops", "/api/shoots", f"/api/shoots/{SHOOT}/photos", f"/api/shoots/{SHOOT}/analytics",
               f"/api/shoots/{SHOOT}/events", "/api/ops"]


@pytest.mark.parametrize("path", STUDIO_GETS)
@pytest.mark.parametrize("auth", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                  {"Cookie": f"{COOKIE}=forged"}])
def test_studio_and_operations_answer_401_without_the_token_and_show_no_data(client: TestClient, path: str,
                                                                             auth: dict[str, str]) -> None:
    response = client.get(path, headers=auth)
    assert response.status_code == 401
    assert SHOOT not in response.text and "Anna" not in response.text and "renditions/" not in response.text


def test_an_upload_form_or_a_new_shoot_needs_the_token_too(client: TestClient, publisher: FakePublisher) -> None:
    assert client.post(f"/api/shoots/{SHOOT}/uploads").status_code == 401
    assert client.post("/api/shoots", json={"title": "x", "clientEmail": "a@example.com"}).status_code == 401
    assert client.post("/api/ops/redrive", json={"ids": ["0:1"]}).status_code == 401
    assert publisher.sent == []


def test_the_bearer_token_opens_the_api(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    shoots = client.get("/api/shoots", headers=auth).json()["shoots"]
    assert [s["shootId"] for s in shoots] == [SHOOT]
    assert shoots[0]["galleryUrl"].startswith("https://photos.example/g/inv-abc.")
    upload = client.post(f"/api/shoots/{SHOOT}/uploads", headers=auth,
                         json={"name": "IMG_0001 (1).JPG", "size": 10}).json()
    assert upload["key"] == f"originals/shoots/{SHOOT}/IMG_0001 (1).JPG" and upload["method"] == "PUT"
    assert upload["fileId"] == file_id_of(upload["key"])  # what ingest will call it
    assert upload["headers"] == {"Content-Type": "image/jpeg"} and upload["url"].startswith("http://s3.test/b/originals/")
    too_big = client.post(f"/api/shoots/{SHOOT}/uploads", headers=auth, json={"name": "p.jpg", "size": 10**12})
    assert too_big.status_code == 413 and "url" not in too_big.json()
    photos = client.get(f"/api/shoots/{SHOOT}/photos", headers=auth).json()
    assert photos["photos"][0]["rendition"] == "thumb" and "thumb.webp" in photos["photos"][0]["url"]


def test_the_login_form_sets_a_session_cookie_that_is_not_the_token(client: TestClient) -> None:
    wrong = client.post("/login", data={"token": "nope", "next": "/"})
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    right = client.post("/login", data={"token": TOKEN, "next": "/ops"})
    assert right.status_code == 303 and right.headers["location"] == "/ops"
    cookie = right.cookies[COOKIE]
    assert cookie and TOKEN not in cookie
    client.cookies.set(COOKIE, cookie)
    page = client.get("/")
    assert page.status_code == 200 and 'id="files"' in page.text


def test_a_token_in_the_url_signs_in_and_is_dropped_from_the_address(client: TestClient) -> None:
    response = client.get(f"/?token={TOKEN}")
    assert response.status_code == 303 and response.headers["location"] == "/" and COOKIE in response.cookies
    client.cookies.clear()
    assert client.get("/?token=wrong").status_code == 401


def test_a_shoot_created_in_the_studio_is_published_as_shoot_created(client: TestClient, publisher: FakePublisher) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad = client.post("/api/shoots", headers=auth, json={"title": "Party", "clientEmail": "not-an-address"})
    assert bad.status_code == 422 and "clientEmail" in bad.json()["error"] or "client_email" in bad.json()["error"]
    created = client.post("/api/shoots", headers=auth, json={"title": "Party Time", "clientEmail": "c@example.com"})
    assert created.status_code == 201 and created.json()["shootId"].startswith("party-time-")
    assert publisher.types() == ["shoot.created"]


@pytest.mark.parametrize("body", [{"name": "../x.jpg"}, {"name": "a.svg"}, {}, {"name": "sub/a.jpg"},
                                  {"name": "bell\u0007.jpg"}, {"name": ".."}])
def test_no_upload_form_is_signed_for_a_key_outside_the_layout(client: TestClient, body: dict[str, str]) -> None:
    response = client.post(f"/api/shoots/{SHOOT}/uploads", headers={"Authorization": f"Bearer {TOKEN}"}, json=body)
    assert response.status_code == 422 and "url" not in response.json()


# -- gallery links and the client's gallery --------------------------------------------------------


def test_a_gallery_token_opens_only_its_invite_and_a_tampered_one_nothing(settings: Settings) -> None:
    token = gallery_token(settings, INVITE)
    assert invite_of_token(settings, token) == INVITE
    assert gallery_token(settings, INVITE) == token  # a resent mail carries the same link
    assert invite_of_token(settings, token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert invite_of_token(settings, "inv-other." + token.split(".")[1]) is None
    other = Settings(dev={"data_dir": settings.dev.data_dir}, web={"link_secret": "x" * 32})  # type: ignore[arg-type]
    assert invite_of_token(other, token) is None  # a new secret revokes every link
    assert gallery_url(settings, INVITE) == f"https://photos.example/g/{token}"


def test_without_a_configured_secret_one_is_generated_once_per_data_dir(tmp_path: Path) -> None:
    settings = Settings(dev={"data_dir": tmp_path})  # type: ignore[arg-type]
    first = gallery_token(settings, INVITE)
    assert (tmp_path / "run" / "web.secret").stat().st_mode & 0o777 == 0o600
    assert gallery_token(Settings(dev={"data_dir": tmp_path}), INVITE) == first  # type: ignore[arg-type]


def test_the_gallery_page_publishes_one_view_and_serves_short_lived_links(client: TestClient, settings: Settings,
                                                                        publisher: FakePublisher) -> None:
    base = f"/g/{gallery_token(settings, INVITE)}"
    page = client.get(base)
    assert page.status_code == 200 and "Anna &amp; Ben" in page.text
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert publisher.types() == ["gallery.viewed"]
    [photo] = client.get(f"{base}/photos").json()["photos"]
    assert photo["fileId"] == "f1" and photo["downloads"] == ["proof"]
    assert "thumb.webp?expires=900" in photo["thumb"] and "web.jpg?expires=900" in photo["web"]
    assert client.post(f"{base}/photos/f1/viewed").status_code == 204
    viewed = json.loads(publisher.sent[-1].value)["data"]
    assert viewed["fileId"] == "f1" and viewed["inviteId"] == INVITE


def test_a_proof_download_publishes_file_downloaded_and_redirects_to_an_attachment(
        client: TestClient, settings: Settings, publisher: FakePublisher) -> None:
    base = f"/g/{gallery_token(settings, INVITE)}"
    response = client.get(f"{base}/photos/f1/proof")
    assert response.status_code == 302 and response.headers["location"].endswith("&download=f1-proof.jpg")
    assert publisher.types() == ["file.downloaded"]
    ids = {json.loads(m.value)["eventId"] for m in publisher.sent}
    client.get(f"{base}/photos/f1/proof")
    assert len({json.loads(m.value)["eventId"] for m in publisher.sent} - ids) == 1  # each download its own id
    # Only the proof may be downloaded; the web rendition or an unknown photo are not there.
    assert client.get(f"{base}/photos/f1/web").status_code == 404
    assert client.get(f"{base}/photos/nope/proof").status_code == 404


@pytest.mark.parametrize("token", ["", "inv-abc", "inv-abc.0123456789abcdef0123456789abcdef", "../../api/shoots"])
def test_a_wrong_gallery_token_is_a_404_with_no_data(client: TestClient, publisher: FakePublisher, token: str) -> None:
    for path in (f"/g/{token}", f"/g/{token}/photos", f"/g/{token}/photos/f1/proof"):
        response = client.get(path)
        assert response.status_code in (401, 404), path
        assert "Anna" not in response.text and "renditions/" not in response.text and "f1" not in response.text
    assert publisher.sent == []


def test_a_valid_token_of_an_invite_the_read_model_does_not_know_is_a_404(client: TestClient, settings: Settings) -> None:
    assert client.get(f"/g/{gallery_token(settings, 'inv-unknown')}").status_code == 404


# -- the analytics consumer -------------------------------------------------------------------------


def ev(payload: BaseModel, event_id: str) -> Event[BaseModel]:
    _, message = event_message(payload, event_id=event_id, producer="test")
    return default_registry().decode(message.value)


def test_analytics_counts_each_event_id_once_per_shoot_and_per_photo(db: Database, settings: Settings) -> None:
    from datetime import UTC, datetime

    stage = AnalyticsStage(default_registry(), db, settings)
    now = datetime.now(UTC)
    view = ev(GalleryViewed(shoot_id=SHOOT, invite_id=INVITE, viewed_at=now), "v1")
    assert stage.apply_once(view) is True
    assert stage.apply_once(view) is False  # a redelivery counts nothing
    stage.apply_once(ev(GalleryViewed(shoot_id=SHOOT, invite_id=INVITE, file_id="f1", viewed_at=now), "v2"))
    stage.apply_once(ev(FileDownloaded(shoot_id=SHOOT, invite_id=INVITE, file_id="f1", rendition="proof",
                                       downloaded_at=now), "d1"))
    counts = shoot_analytics(db.conn(), SHOOT)
    assert (counts.views, counts.downloads, counts.photos) == (1, 1, {"f1": (1, 1)})
    assert shoot_analytics(db.conn(), "other").views == 0


# -- live items -------------------------------------------------------------------------------------


def _message(payload: BaseModel, event_id: str = "e1") -> Outgoing:
    return event_message(payload, event_id=event_id, producer="test")[1]


def test_a_file_processed_becomes_an_item_of_its_shoot_filtered_on_the_header() -> None:
    from pipeline.contracts.events import FileProcessed

    m = _message(FileProcessed(file_id="f1", shoot_id=SHOOT, rendition="thumb", bucket="b", key="k.webp", width=4,
                               height=3, bytes=9, format="webp", source_event_id="s"))
    item = translate("files", m.key, m.value, m.headers)
    assert item is not None
    assert (item["type"], item["shootId"], item["fileId"], item["rendition"], item["key"]) == \
        ("file.processed", SHOOT, "f1", "thumb", "k.webp")
    # Events the page has no use for are dropped before the body is parsed.
    assert translate("files", b"k", b"not json", [("eventType", b"file.deleted")]) is None


def test_a_dead_letter_shows_its_stage_and_reason_and_a_redrive_marker_nothing() -> None:
    raw = json.dumps({"Records": [{"s3": {"object": {"key": f"originals/shoots/{SHOOT}/bad.jpg"}}}]}).encode()
    headers: list[tuple[str, Any]] = [("dlq.stage", b"ingest"), ("dlq.error.class", b"pipeline.errors.PermanentError"),
                                      ("dlq.error.message", b"not an image: magic bytes 'GIF8'")]
    item = translate("dead-letter-queue", b"s3", raw, headers)
    assert item is not None and item["shootId"] == SHOOT and item["stage"] == "ingest"
    assert item["reason"] == "not an image: magic bytes 'GIF8'" and item["errorClass"] == "PermanentError"
    assert DeadLetter.from_message(b"s3", raw, headers).stage == "ingest"
    assert translate("dead-letter-queue", b"s3", None, [("dlq.marker", b"redriven")]) is None


def test_the_feed_hands_an_item_only_to_pages_of_its_shoot_with_a_presigned_link(settings: Settings) -> None:
    import asyncio
    import threading

    from pipeline.contracts.events import FileProcessed
    from web.live import LiveFeed

    feed = LiveFeed(settings, FakeStore())  # type: ignore[arg-type]
    m = _message(FileProcessed(file_id="f1", shoot_id=SHOOT, rendition="thumb", bucket="b", key="k.webp", width=4,
                               height=3, bytes=9, format="webp", source_event_id="s"))

    async def scenario() -> tuple[dict[str, Any], bool]:
        feed._loop = asyncio.get_running_loop()
        mine, other = feed.subscribe(SHOOT), feed.subscribe("other-shoot")
        reader = threading.Thread(target=feed._dispatch, args=("files", m.key, m.value, m.headers))
        reader.start()
        reader.join()
        item = await asyncio.wait_for(mine.get(), 5)
        return item, other.empty()

    item, other_empty = asyncio.run(scenario())
    assert item["url"] == "http://s3.test/b/k.webp?expires=900" and "key" not in item
    assert other_empty


def test_a_placeholder_paints_the_photos_average_colour() -> None:
    import pyvips

    from stages.imaging.placeholder import blurhash
    from web.gallery import placeholder_colour

    solid = (pyvips.Image.black(32, 24, bands=3) + [200, 30, 90]).cast("uchar").copy(interpretation="srgb")
    assert placeholder_colour(blurhash(solid)) == "#c81e5a"
    assert placeholder_colour("not a hash!") is None and placeholder_colour("") is None
