"""The notifier: tells a shoot's client about new photos (batched) and about delivery.

Reads `shoots` (who the client is; shoot.delivered) and `galleries` (gallery.updated). A photo added
to a gallery is recorded as pending; the relay's `tick` turns a shoot's pending photos into one mail
once the oldest has waited `notify_interval_s`, so a shoot of 2,000 photos makes one mail per
interval, not 2,000. The batch number is part of the Message-ID, and assigning photos to a batch,
queuing its mail and the idempotency keys are all database transactions: no photo is mailed twice.
"""

from __future__ import annotations

import sqlite3
import time

from pydantic import BaseModel

from orchestration.consumer import Effects, OrchestrationStage
from orchestration.ids import normalise_email
from orchestration.mail import Mail, message_id
from pipeline.contracts.events import (
    GALLERY_UPDATED,
    SHOOT_COMPLETED,
    SHOOT_CREATED,
    SHOOT_DELIVERED,
    SHOOT_UPDATED,
    GalleryUpdated,
    ShootCompleted,
    ShootCreated,
    ShootDelivered,
    ShootUpdated,
)
from pipeline.contracts.topics import GALLERIES, SHOOTS
from pipeline.errors import PermanentError
from pipeline.registry import Event


class NotifierStage(OrchestrationStage):
    """Mails clients: one gallery update per shoot per interval, and delivery at once."""

    name = "notifier"
    topics = (SHOOTS, GALLERIES)
    event_types = frozenset({SHOOT_CREATED, SHOOT_UPDATED, SHOOT_COMPLETED, SHOOT_DELIVERED, GALLERY_UPDATED})

    def apply(self, tx: sqlite3.Connection, event: Event[BaseModel], fx: Effects) -> None:
        payload, env = event.payload, event.envelope
        if isinstance(payload, ShootCreated):
            tx.execute("INSERT OR IGNORE INTO notify_shoots (shoot_id, title, client_email, correlation_id)"
                       " VALUES (?,?,?,?)", (payload.shoot_id, payload.title, normalise_email(payload.client_email),
                                             env.correlation_id))
        elif isinstance(payload, ShootUpdated):
            if payload.title is not None:
                tx.execute("UPDATE notify_shoots SET title = ? WHERE shoot_id = ?", (payload.title, payload.shoot_id))
            if payload.client_email is not None:
                tx.execute("UPDATE notify_shoots SET client_email = ? WHERE shoot_id = ?",
                           (normalise_email(payload.client_email), payload.shoot_id))
        elif isinstance(payload, GalleryUpdated):
            if payload.change == "added":
                # Wall-clock time of arrival, not the event's time: a notifier catching up on a backlog
                # must still batch it into one mail rather than find every photo overdue one by one.
                tx.execute("INSERT OR IGNORE INTO notify_pending (shoot_id, file_id, first_seen) VALUES (?,?,?)",
                           (payload.shoot_id, payload.file_id, time.time()))
            else:
                tx.execute("DELETE FROM notify_pending WHERE shoot_id = ? AND file_id = ? AND batch IS NULL",
                           (payload.shoot_id, payload.file_id))
        elif isinstance(payload, ShootCompleted):
            # No more photos are coming: mail what is pending at the next tick instead of waiting.
            tx.execute("UPDATE notify_pending SET first_seen = 0 WHERE shoot_id = ? AND batch IS NULL", (payload.shoot_id,))
        elif isinstance(payload, ShootDelivered):
            shoot = tx.execute("SELECT * FROM notify_shoots WHERE shoot_id = ?", (payload.shoot_id,)).fetchone()
            if shoot is None:
                # `shoots` is keyed by shoot id, so shoot.created always comes first: a delivery of a
                # shoot never created is a bad event (PermanentError → dead-letter queue).
                raise PermanentError(f"shoot {payload.shoot_id} delivered but it was never created")
            count = tx.execute("SELECT count(*) FROM notify_pending WHERE shoot_id = ?", (payload.shoot_id,)).fetchone()[0]
            body = (f"Hello,\n\nthe gallery of \"{shoot['title']}\" ({payload.shoot_id}) is delivered: {count} photo(s).\n"
                    + (f"\n{payload.message}\n" if payload.message else "") + "\n-- darkroom\n")
            fx.mail("delivered", payload.shoot_id, Mail(
                message_id("delivered", env.event_id), shoot["client_email"], f"Your photos are ready: {shoot['title']}",
                body, env.correlation_id, env.event_id,
            ))

    def tick(self, tx: sqlite3.Connection, now: float, fx: Effects) -> None:
        """Mail every shoot whose oldest unmailed photo has waited a whole interval."""
        interval = self.settings.orchestration.notify_interval_s
        due = tx.execute(
            "SELECT p.shoot_id FROM notify_pending p JOIN notify_shoots s ON s.shoot_id = p.shoot_id"
            " WHERE p.batch IS NULL GROUP BY p.shoot_id HAVING min(p.first_seen) <= ?", (now - interval,),
        ).fetchall()
        for (shoot_id,) in due:
            shoot = tx.execute("SELECT * FROM notify_shoots WHERE shoot_id = ?", (shoot_id,)).fetchone()
            batch = tx.execute("SELECT coalesce(max(batch), 0) + 1 FROM notify_pending WHERE shoot_id = ?",
                               (shoot_id,)).fetchone()[0]
            tx.execute("UPDATE notify_pending SET batch = ? WHERE shoot_id = ? AND batch IS NULL", (batch, shoot_id))
            files = [r[0] for r in tx.execute("SELECT file_id FROM notify_pending WHERE shoot_id = ? AND batch = ?"
                                              " ORDER BY file_id", (shoot_id, batch))]
            body = (f"Hello,\n\n{len(files)} new photo(s) in the gallery of \"{shoot['title']}\" ({shoot_id}):\n"
                    + "".join(f"  {f}\n" for f in files) + f"\nSee them with: darkroom gallery {shoot_id}\n\n-- darkroom\n")
            fx.mail("gallery", f"{shoot_id}|{batch}", Mail(
                message_id("gallery", shoot_id, str(batch)), shoot["client_email"],
                f"{len(files)} new photo(s): {shoot['title']}", body, shoot["correlation_id"], f"batch:{shoot_id}:{batch}",
            ))
