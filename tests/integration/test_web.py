"""`darkroom web` on the real stack, in a real headless Chromium (Debian's `chromium`, driven by Playwright).

The studio page uploads photos straight to versitygw with the presigned POST form, follows them
over server-sent events fed by Kafka, the client opens the gallery from the invite mail's link,
views a photo and downloads its proof, and the studio page shows that view and download as counted
by the analytics consumer from the `galleries` topic. Screenshots of every page are saved under
the stack's data dir (their paths are printed).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from operations.devstack import DevStack
from operations.fleet.cli import planned_specs
from operations.fleet.state import read_state, state_path
from orchestration.analytics import shoot_analytics
from orchestration.db import Database
from orchestration.rebuild import rebuild
from pipeline.contracts.events import FILE_DOWNLOADED, GALLERY_VIEWED, INVITE_SENT
from pipeline.contracts.topics import GALLERIES, INVITES
from pipeline.settings import Settings
from pipeline.watch import Seen
from storage import ObjectStore
from tests.integration.conftest import make_photos
from tests.integration.helpers import mails_to

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = f"studio-{uuid.uuid4().hex}"
STAGES = ("ingest", "resize", "thumbnail", "watermark", "gallery", "users", "invites", "invite-sender", "analytics")
WORKERS = ",".join(f"{s}=1" for s in STAGES)
# What `fleet up --workers WORKERS` runs: the image stages fused into one, by default.
FLEET_STAGES = tuple(spec.stage for spec in planned_specs(WORKERS))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def web_env(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Where this module's web server listens, its token, a read model of its own, the studio's renditions.

    `dev up` runs again with the web origin set: it is what puts CORS for that origin on the bucket.
    """
    port = _free_port()
    env = {
        "DARKROOM_WEB__PORT": str(port),
        "DARKROOM_WEB__BASE_URL": f"http://127.0.0.1:{port}",
        "DARKROOM_WEB__TOKEN": TOKEN,
        "DARKROOM_ORCHESTRATION__DB_PATH": str(tmp_path_factory.mktemp("web-db") / "orchestration.sqlite"),
        "DARKROOM_ORCHESTRATION__RELAY_TICK_S": "0.2",
        "DARKROOM_PIPELINE_FILE": str(REPO / "examples" / "pipeline.yaml"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        DevStack(Settings()).up()
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def web_server(web_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `darkroom web` process; yields its base URL once it answers."""
    base = web_env["DARKROOM_WEB__BASE_URL"]
    log = tmp_path_factory.mktemp("web-log") / "web.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--log-level", "INFO", "web"], cwd=REPO,
                                env={**os.environ, **web_env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while status(f"{base}/")[0] != 401:
            assert proc.poll() is None, f"darkroom web exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"darkroom web did not answer: {log.read_text()}"
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(f"web server log: {log}")


def status(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Status and body of a GET (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return 0, ""


def invite_mail_link(email: str) -> str:
    """The gallery link of the invite mail Mailpit received for `email` (the one place that reads mail)."""
    found = mails_to(email, "invited")
    assert found, f"no invite mail to {email} in Mailpit"
    _mail, text = found[0]
    link = re.search(r"https?://\S+/g/\S+", text)
    assert link, f"no gallery link in the invite mail:\n{text}"
    return link.group(0)


def screenshot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    path = Path(os.environ["DARKROOM_DEV__DATA_DIR"]) / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


@pytest.fixture
def fleet(web_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    """`darkroom fleet up` with one worker of every stage the pages need, in the stack's data dir
    (so the operations page sees it); yields the data dir once every worker runs."""
    data_dir = Path(os.environ["DARKROOM_DEV__DATA_DIR"])
    log = tmp_path / "fleet.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "--log-level", "INFO", "fleet", "up", "--workers",
                                 WORKERS], cwd=REPO, env={**os.environ, **web_env},
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            state = read_state(state_path(data_dir))
            if state is not None and state.supervisor_pid == proc.pid and all(
                    any(w.state == "running" for w in state.stages[s].workers) for s in FLEET_STAGES if s in state.stages) \
                    and set(FLEET_STAGES) <= set(state.stages):
                break
            assert proc.poll() is None and time.monotonic() < deadline, f"fleet not up:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield data_dir
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def explained(page, name: str) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """On a failed wait: a screenshot, and what the page says, in the assertion."""
    try:
        yield
    except Exception as exc:
        shot = screenshot(page, f"failed-{name}")
        raise AssertionError(f"{exc}\npage text:\n{page.inner_text('body')}\nconsole:\n"
                             + "\n".join(getattr(page, "console_lines", [])) + f"\nscreenshot: {shot}") from exc


def watched(page):  # type: ignore[no-untyped-def]
    """Keep the page's console lines (for `explained`)."""
    page.console_lines = []
    page.on("console", lambda msg: page.console_lines.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: page.console_lines.append(f"error: {err}"))
    return page


@pytest.fixture
def browser(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Headless Debian chromium with a fresh profile and background networking off."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is missing: `apt-get install -y chromium` (make test installs it)"
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
            accept_downloads=True, viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


def test_a_studio_uploads_in_the_browser_and_the_client_views_and_downloads_from_the_invite_link(
    settings: Settings, store: ObjectStore, web_env: dict[str, str], web_server: str, fleet: Path, watch, browser,
    tmp_path: Path,
) -> None:
    invites, galleries = watch(INVITES), watch(GALLERIES)
    photos = make_photos(tmp_path / "photos", 5, seed=15, sizes=[(1600, 1067), (1067, 1600)])
    broken = tmp_path / "photos" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 20)
    email = f"client-{uuid.uuid4().hex[:8]}@example.com"

    # The studio: 401 and the login form first, then the token.
    page = watched(browser.new_page())
    assert page.goto(f"{web_server}/").status == 401
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#new-shoot")
    page.fill("#title", "Web Wedding")
    page.fill("#client-email", email)
    page.click("#new-shoot button[type=submit]")
    page.wait_for_selector("#shoot:not([hidden])")
    shoot_id = page.inner_text("#shoot-id")
    page.wait_for_selector("#live.ok", timeout=60_000)  # the Kafka feed is positioned: nothing published now is missed

    page.evaluate("window.notReloaded = true")
    page.set_input_files("#files", [*map(str, photos), str(broken)])
    with explained(page, "studio-thumbnails"):
        page.wait_for_function("document.querySelectorAll('.card img[data-rendition=\"thumb\"]').length === 5",
                               timeout=180_000)
        page.wait_for_selector("#dead li", timeout=120_000)
    assert page.evaluate("window.notReloaded") is True  # the thumbnails came over the event stream
    dead = page.inner_text("#dead")
    assert "resize" in dead and "broken" in dead, dead
    assert store.list(f"originals/shoots/{shoot_id}/").__next__().key.startswith(f"originals/shoots/{shoot_id}/")
    screenshot(page, "studio-after-upload")

    # The client: the link in the invite mail opens the gallery.
    invites.until(lambda seen: any(s.event_type == INVITE_SENT and s.envelope().data["shootId"] == shoot_id
                                   for s in seen), 120)
    link = invite_mail_link(email)
    assert link.startswith(f"{web_server}/g/")
    # The gallery page shows what is complete when it opens (it is not live): thumbnails in the studio
    # come before `proof` and the gallery's own update, so wait for all five in the gallery first.
    galleries.until(lambda seen: len({s.envelope().data["fileId"] for s in seen if s.event_type == "gallery.updated"
                                      and s.envelope().data["shootId"] == shoot_id}) >= 5, 120)
    client = watched(browser.new_page())
    assert client.goto(link).status == 200
    with explained(client, "the client's gallery"):
        client.wait_for_function("document.querySelectorAll('figure.photo img').length === 5 &&"
                                 " [...document.querySelectorAll('figure.photo img')].every(i => i.complete && i.naturalWidth > 0)",
                                 timeout=60_000)
    screenshot(client, "gallery")
    client.click("figure.photo >> nth=0")
    client.wait_for_function("document.querySelector('#viewer-img').complete && "
                             "document.querySelector('#viewer-img').naturalWidth > 0", timeout=60_000)
    screenshot(client, "gallery-viewer")
    with client.expect_download(timeout=60_000) as download:
        client.click("#download")
    saved = Path(download.value.path())
    assert saved.read_bytes()[:3] == b"\xff\xd8\xff" and download.value.suggested_filename.endswith("-proof.jpg")

    # The studio page shows one view and one download, counted from the topic.
    page.wait_for_function("document.querySelector('#views').textContent === '1' &&"
                           " document.querySelector('#downloads').textContent === '1'", timeout=120_000)
    page.wait_for_selector("text=1 views · 1 downloads", timeout=60_000)
    screenshot(page, "studio-with-analytics")

    def of_shoot(seen: list[Seen], event_type: str) -> list[Seen]:
        return [s for s in seen if s.event_type == event_type and s.envelope().data["shootId"] == shoot_id]

    galleries.until(lambda seen: of_shoot(seen, FILE_DOWNLOADED), 60)
    views, downloads = of_shoot(galleries.seen, GALLERY_VIEWED), of_shoot(galleries.seen, FILE_DOWNLOADED)
    assert [v.envelope().data.get("fileId") is None for v in views].count(True) == 1  # the gallery opened once
    assert len(downloads) == 1
    ids = [s.envelope().event_id for s in views + downloads]
    assert len(ids) == len(set(ids))
    counts = shoot_analytics(Database(Path(web_env["DARKROOM_ORCHESTRATION__DB_PATH"])).conn(), shoot_id)
    assert (counts.views, counts.downloads) == (1, 1)
    # The counters are a projection of the topic: replaying it gives the same numbers.
    rebuild("analytics", Settings(), into=tmp_path / "rebuilt.sqlite")
    assert shoot_analytics(Database(tmp_path / "rebuilt.sqlite").conn(), shoot_id) == counts

    # Operations: the fleet's stages, and the broken photo's letter, redriven from the page.
    ops = watched(browser.new_page())
    ops.goto(f"{web_server}/ops")
    with explained(ops, "operations"):
        ops.wait_for_function(f"document.querySelectorAll('#stages tbody tr').length >= {len(FLEET_STAGES)}", timeout=60_000)
        ops.wait_for_selector("#letters tbody tr >> text=broken", timeout=60_000)
    stages = ops.inner_text("#stages")
    assert all(stage in stages for stage in FLEET_STAGES), stages
    screenshot(ops, "operations")
    row = ops.locator("#letters tbody tr", has_text="broken").first
    letter = row.locator("td >> nth=1").inner_text()
    row.locator("input[type=checkbox]").check()
    ops.click("#redrive")
    with explained(ops, "redrive"):
        ops.wait_for_selector(f"#redrive-result >> text=redriven: {letter}", timeout=60_000)
        # Redriven letters are no longer open; the photo fails again in resize and writes a new one.
        ops.wait_for_function(f"![...document.querySelectorAll('#letters tbody tr td:nth-child(2)')]"
                              f".some(td => td.textContent === '{letter}')", timeout=60_000)
    screenshot(ops, "operations-after-redrive")


def test_without_a_token_or_with_a_wrong_one_nothing_is_served(web_server: str, web_env: dict[str, str]) -> None:
    for path in ("/", "/ops", "/api/shoots", "/api/ops", "/api/shoots/x/photos", "/api/shoots/x/events"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "darkroom_studio=forged"}):
            code, body = status(f"{web_server}{path}", headers)
            assert code == 401, (path, headers, code)
            assert "shootId" not in body and "photos" not in body.lower().replace("no photos", "")
    for path in ("/g/inv-x.0123456789abcdef0123456789abcdef", "/g/nothing", "/g/x/photos", "/static/studio.js"):
        code, body = status(f"{web_server}{path}")
        assert code == 404, (path, code)
        assert "fileId" not in body
    # With the token, the same API answers.
    code, body = status(f"{web_server}/api/shoots", {"Authorization": f"Bearer {TOKEN}"})
    assert code == 200 and "shoots" in json.loads(body)


def test_a_presigned_upload_outside_the_shoots_prefix_is_refused_by_the_store(
        web_server: str, store: ObjectStore, shoot_id: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    key = f"originals/shoots/{shoot_id}/Café (1).jpg"
    upload = httpx.post(f"{web_server}/api/shoots/{shoot_id}/uploads", headers=auth, timeout=30,
                        json={"name": "Café (1).jpg", "size": 100}).json()
    assert upload["key"] == key and upload["method"] == "PUT"
    jpeg = make_photos(Path(os.environ["DARKROOM_DEV__DATA_DIR"]) / "prefix-test", 1, seed=77, sizes=[(64, 48)])[0]
    url = httpx.URL(upload["url"])

    def put(path: str) -> httpx.Response:
        return httpx.put(url.copy_with(path=path), content=jpeg.read_bytes(), headers=upload["headers"], timeout=30)

    # The signed URL with another key: another shoot, another photo of this shoot, a dot-segment
    # escape sent raw (httpx would normalise it away): the store refuses each (403).
    bucket = url.path.split("/")[1]
    for other in (f"originals/shoots/other-{shoot_id}/evil.jpg", f"originals/shoots/{shoot_id}/x.jpg"):
        refused = put(f"/{bucket}/{other}")
        assert refused.status_code == 403, (other, refused.status_code, refused.text)
    escape = f"/{bucket}/originals/shoots/{shoot_id}/../other-{shoot_id}/evil.jpg?{url.query.decode()}"
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        body = jpeg.read_bytes()
        sock.sendall(f"PUT {escape} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nContent-Length: {len(body)}\r\n"
                     f"Content-Type: image/jpeg\r\nConnection: close\r\n\r\n".encode() + body)
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.split()[1] in ("400", "403"), answer
    assert not list(store.list(f"originals/shoots/other-{shoot_id}/"))
    assert [o.key for o in store.list(f"originals/shoots/{shoot_id}/")] == []
    # The server signs nothing for a key outside the layout.
    bad = httpx.post(f"{web_server}/api/shoots/{shoot_id}/uploads", headers=auth, timeout=30,
                     json={"name": "../../x.jpg"})
    assert bad.status_code == 422
    # The URL as given works.
    inside = put(url.path)
    assert inside.status_code == 200, inside.text
    assert store.exists(key)
