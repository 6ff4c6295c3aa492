"""Faults on the real stack, with nobody touching anything: the broker killed during an upload, the
broker down past the producer's delivery timeout, a worker frozen past its session timeout.

Counts come from the topics, read with plain `read_committed` consumers (TopicWatcher), never from
the read models. Recovery times are printed (run with `-s` to see them; docs/RELIABILITY.md keeps
what was measured), never asserted.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from operations.devstack import DevStack
from operations.fleet.state import FleetState, worker_ready
from pipeline.contracts.events import FILE_PROCESSED, FILE_UPLOADED
from pipeline.contracts.topics import DEAD_LETTER_QUEUE, FILES, GALLERIES, INVITES, STORAGE_EVENTS
from pipeline.settings import Settings
from pipeline.watch import TopicWatcher
from storage import ObjectStore
from storage.keys import file_id_of
from tests.integration.conftest import REPO, make_photos
from tests.integration.helpers import dead_letters, deliveries, events_of, group_caught_up
from tests.integration.test_business_flow import caught_up, darkroom, of_type
from tests.integration.test_fleet import Fleet
from tests.integration.test_gallery import _added

# A whole fleet on a small, shared CI machine, an outage and the catching up: more than the default 300 s.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

STUDIO = REPO / "examples" / "pipeline.yaml"
RENDITIONS = {"web", "thumb", "proof"}  # what examples/pipeline.yaml declares


def report(fault: str, **figures: object) -> None:
    """One line of measurements per fault, for docs/RELIABILITY.md."""
    print(f"\nFAULT {fault}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def put_photos(store: ObjectStore, paths: list[Path], shoot_id: str,
               after: Callable[[int], None] = lambda _i: None) -> list[str]:
    """PUT each photo as an original under its own name, straight through the store adapter; `after(i)`
    runs after the i-th. Returns the file ids ingest makes of the keys."""
    ids = []
    for i, path in enumerate(paths):
        key = f"originals/shoots/{shoot_id}/{path.name}"
        store.put(key, path.read_bytes(), content_type="image/jpeg")
        ids.append(file_id_of(key))
        after(i)
    return ids


def renditions_seen(files: TopicWatcher, ids: set[str]) -> dict[tuple[str, str], set[str]]:
    """(file id, rendition) → the distinct event ids of its `file.processed` seen so far."""
    out: dict[tuple[str, str], set[str]] = {}
    for s in events_of(files.seen, FILE_PROCESSED, ids):
        envelope = s.envelope()
        out.setdefault((envelope.data["fileId"], envelope.data["rendition"]), set()).add(envelope.event_id)
    return out


def invite_mails(shoot_id: str, invites: TopicWatcher) -> tuple[list[str], int]:
    """The shoot's `invite.sent` event ids, and how many mails with their Message-ID Mailpit received."""
    sent = of_type(invites.seen, "invite.sent", shootId=shoot_id)
    message_ids = {e.data["messageId"] for e in sent}
    return [e.event_id for e in sent], sum(deliveries(m) for m in message_ids)


def await_until(what: str, done: Callable[[], bool], timeout_s: float, *watchers: TopicWatcher) -> float:
    """Poll `watchers` until `done()`; returns when (monotonic). Fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f}s")
        for w in watchers:
            w.poll(0.2)
    return time.monotonic()


@pytest.fixture
def orch_env(tmp_path: Path, stack: DevStack) -> dict[str, str]:
    """The business consumers' database of this test, a quick relay, and the stack's Mailpit by port
    (a fleet has a data dir of its own, so it would not find the port file)."""
    return {"DARKROOM_ORCHESTRATION__DB_PATH": str(tmp_path / "orchestration.sqlite"),
            "DARKROOM_ORCHESTRATION__RELAY_TICK_S": "0.2",
            "DARKROOM_ORCHESTRATION__SMTP_PORT": str(stack.smtp.port)}


@pytest.fixture
def fleet_of(stack_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    started: list[Fleet] = []

    def start(env: dict[str, str], *args: str) -> Fleet:
        started.append(Fleet({**stack_env, **env}, tmp_path / f"fleet{len(started)}", *args))
        return started[-1]

    yield start
    for f in started:
        f.stop()


def all_ready(settings: Settings, f: Fleet) -> Callable[[FleetState], bool]:
    def ready(state: FleetState) -> bool:
        workers = [w for st in state.stages.values() for w in st.workers]
        return bool(workers) and all(w.state == "running" and w.port and worker_ready(settings.worker.http_host, w.port)
                                     for w in workers)
    return ready


def test_broker_killed_during_an_upload_every_photo_and_the_invite_get_through_with_nobody_touching_anything(
    settings: Settings, stack: DevStack, store: ObjectStore, fleet_of, watch, photo_dir: Path,
    orch_env: dict[str, str],
) -> None:
    files, galleries, invites, dlq = watch(FILES), watch(GALLERIES), watch(INVITES), watch(DEAD_LETTER_QUEUE)
    notifications = watch(STORAGE_EVENTS)
    env = {**orch_env, "DARKROOM_PIPELINE_FILE": str(STUDIO),
           # Quick passes for a test (the default is every 60 s). The grace stays the default 60 s,
           # longer than this outage: every PUT is an upload of its own (#11), so a notification that
           # arrives after the reconciler announced its object makes a second version of the same
           # bytes, and the outage delays notifications by the broker's whole restart.
           "DARKROOM_RECONCILE__INTERVAL_S": "3", "DARKROOM_RECONCILE__GRACE_S": "60",
           "DARKROOM_RECONCILE__FULL_SWEEP_EVERY": "5"}
    f = fleet_of(env)  # no --workers: every stage the pipeline file needs, the business consumers, the reconciler
    state = f.wait(all_ready(settings, f), 240, "every worker ready")
    # The image stages run fused, as `fleet up` does by default (#13).
    assert set(state.stages) == {"ingest", "resize+thumbnail+watermark", "gallery", "users", "invites",
                                 "invite-sender", "notifier", "analytics", "reconcile"}

    email = f"outage-{time.time_ns()}@example.com"
    shoot_id = darkroom(env, "shoot", "create", "--title", "Outage", "--client-email", email).strip()
    photos = make_photos(photo_dir / "broker-kill", 40, seed=101, sizes=[(2400, 1600), (1600, 2400)])
    killed: dict[str, float] = {}
    gone, restarted = threading.Event(), threading.Event()

    def restart_in_5s() -> None:
        stack.kill("kafka")
        killed["at"] = time.monotonic()
        gone.set()
        time.sleep(5.0)  # the fault itself: the broker stays away 5 s
        stack.up()
        killed["back"] = time.monotonic()
        restarted.set()

    def kill_after_tenth(i: int) -> None:
        if i == 9:
            threading.Thread(target=restart_in_5s, daemon=True).start()
            assert gone.wait(30)  # the next PUT happens with the broker gone

    ids = set(put_photos(store, photos, shoot_id, after=kill_after_tenth))
    assert len(ids) == 40
    assert restarted.wait(120), "the broker did not come back"
    wanted = {(i, r) for i in ids for r in RENDITIONS}

    t_renditions = await_until("every rendition of every photo", lambda: set(renditions_seen(files, ids)) >= wanted,
                               600, files)
    t_gallery = await_until("a gallery.updated per photo", lambda: set(_added(galleries, shoot_id)) >= ids, 300,
                            galleries)
    t_invite = await_until("the invite sent", lambda: bool(invite_mails(shoot_id, invites)[0]), 300, invites)
    # Quiet before counting: the gallery and the invite-sender have committed everything they read.
    caught_up(settings, "gallery", FILES, 120)
    caught_up(settings, "invite-sender", INVITES, 120)
    for w in (files, galleries, invites, dlq, notifications):
        w.poll(2.0)
    # Photos whose store notification never reached the broker: only the reconcile worker could bring them in.
    notified = {i for i in ids if any(i.encode() in (n.value or b"") for n in notifications.seen)}

    uploaded = {s.key.decode() for s in events_of(files.seen, FILE_UPLOADED, ids)}
    assert uploaded == ids
    assert {k: len(v) for k, v in renditions_seen(files, ids).items()} == {k: 1 for k in wanted}  # one event id each
    assert _added(galleries, shoot_id) == {i: 1 for i in ids}  # exactly one gallery.updated per photo
    sent, received = invite_mails(shoot_id, invites)
    assert len(sent) == 1 and received == 1
    assert not [d for d in dead_letters(dlq) if d.key and d.key.decode() in ids]
    report("broker SIGKILL during a 40-photo upload, back after 5 s", photos=40, notifications_lost=len(ids - notified),
           lost=len(ids - uploaded),
           duplicate_gallery_updates=sum(_added(galleries, shoot_id).values()) - len(ids),
           invite_sent=len(sent), invite_mails=received,
           every_rendition_s=f"{t_renditions - killed['back']:.1f}", every_gallery_update_s=f"{t_gallery - killed['back']:.1f}",
           invite_sent_s=f"{max(0.0, t_invite - killed['back']):.1f}", note="seconds after the broker answered again")


def test_broker_down_past_the_delivery_timeout_loses_nothing_and_dead_letters_nothing(
    settings: Settings, stack: DevStack, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str,
) -> None:
    files, dlq = watch(FILES), watch(DEAD_LETTER_QUEUE)
    # Deliveries time out after 5 s, and three failures would dead-letter an event that failed on its own:
    # a 20 s outage is four delivery timeouts.
    env = {"DARKROOM_WORKER__DELIVERY_TIMEOUT_S": "5", "DARKROOM_WORKER__RETRY_MAX_ATTEMPTS": "3"}
    start_worker("ingest", **env)
    resize = start_worker("resize", DARKROOM_WORKER__THREADS="1", **env)
    ids = set(put_photos(store, make_photos(photo_dir / "long-outage", 24, seed=102, sizes=[(4000, 3000)]), shoot_id))
    files.until(lambda seen: len(events_of(seen, FILE_UPLOADED, ids)) == len(ids), 120)
    files.until(lambda seen: len(events_of(seen, FILE_PROCESSED, ids)) >= 1, 120)  # photos are in flight now

    stack.kill("kafka")  # at once: a controlled shutdown would give the photos in flight time to finish
    stopped = time.monotonic()
    before = len({s.key for s in events_of(files.seen, FILE_PROCESSED, ids)})
    assert before < len(ids), "every photo was done before the outage; the test proves nothing"
    try:
        # The fault itself: 20 s without a broker, four delivery timeouts. An output produced meanwhile times
        # out (DeliveryFailed) and its photo is redone; one librdkafka had already sent may instead wait for the
        # connection to give up. The report line says which retries the worker logged.
        time.sleep(20.0)
    finally:
        stack.up()
    back = time.monotonic()
    done = await_until("every photo processed", lambda: {s.key.decode() for s in events_of(files.seen, FILE_PROCESSED, ids)}
                       >= ids, 300, files)
    group_caught_up(settings, "resize", FILES, 120)
    dlq.poll(2.0)
    processed = events_of(files.seen, FILE_PROCESSED, ids)
    assert {s.key.decode() for s in processed} == ids
    assert len({s.envelope().event_id for s in processed}) == len(ids)  # redone work republished the same ids
    assert not [d for d in dead_letters(dlq) if d.key and d.key.decode() in ids]
    assert resize.proc.poll() is None  # the worker rode it out
    first_try = re.compile(r"retrying \S+ in \S+ \(attempt \d+\): (\w+)")  # logged at a job's first retry
    retried = Counter(m.group(1) for line in resize.lines if (m := first_try.search(line)))
    report("broker down 20 s (SIGKILL), delivery timeout 5 s, retry budget 3", photos=len(ids),
           in_flight_at_kill=len(ids) - before, lost=0, dead_lettered=0, first_retries=dict(retried) or "none",
           outage_s=f"{back - stopped:.1f}", every_photo_s=f"{done - back:.1f}", note="seconds after the broker answered again")


def test_a_worker_frozen_past_its_session_timeout_loses_no_photo_and_duplicates_no_update_or_mail(
    settings: Settings, store: ObjectStore, start_worker, watch, photo_dir: Path, shoot_id: str,
    orch_env: dict[str, str],
) -> None:
    files, galleries, invites, dlq = watch(FILES), watch(GALLERIES), watch(INVITES), watch(DEAD_LETTER_QUEUE)
    for stage in ("ingest", "resize", "users", "invites"):
        start_worker(stage, **orch_env)
    frozen = [start_worker(stage, **orch_env) for stage in ("gallery", "invite-sender")]
    for w in frozen:
        w.wait_for_line(rf"{w.stage}: assigned \[\(", 90)
    email = f"frozen-{time.time_ns()}@example.com"
    created = darkroom(orch_env, "shoot", "create", "--title", "Frozen", "--client-email", email).strip()
    photos = make_photos(photo_dir / "frozen", 24, seed=103, sizes=[(1600, 1200)])
    first = set(put_photos(store, photos[:12], shoot_id))
    files.until(lambda seen: len(events_of(seen, FILE_PROCESSED, first)) >= 3, 120)  # the gallery has work

    for w in frozen:
        w.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        replacements = [start_worker(w.stage, **orch_env) for w in frozen]
        second = set(put_photos(store, photos[12:], shoot_id))
        ids = first | second
        # The frozen members miss their heartbeats: after the session timeout (6 s) the group moves their partitions.
        for r in replacements:
            r.wait_for_line(rf"{r.stage}: assigned \[\(", 120)
        moved = time.monotonic()
    finally:
        for w in frozen:
            w.signal(signal.SIGCONT)  # it wakes up with a stale view of its partitions
    t_gallery = await_until("a gallery.updated per photo", lambda: set(_added(galleries, shoot_id)) >= ids, 300, galleries)
    t_invite = await_until("the invite sent", lambda: bool(invite_mails(created, invites)[0]), 300, invites)
    caught_up(settings, "gallery", FILES, 120)
    caught_up(settings, "invite-sender", INVITES, 120)
    for w in (files, galleries, invites, dlq):
        w.poll(2.0)

    assert _added(galleries, shoot_id) == {i: 1 for i in ids}
    sent, received = invite_mails(created, invites)
    assert len(sent) == 1 and received == 1
    assert not [d for d in dead_letters(dlq) if d.key and d.key.decode() in ids]
    report("gallery and invite-sender frozen (SIGSTOP) past the session timeout", photos=len(ids), lost=0,
           duplicate_gallery_updates=sum(_added(galleries, shoot_id).values()) - len(ids), invite_mails=received,
           partitions_moved_s=f"{moved - frozen_at:.1f}", every_gallery_update_s=f"{t_gallery - frozen_at:.1f}",
           invite_sent_s=f"{t_invite - frozen_at:.1f}", note="seconds after SIGSTOP")

