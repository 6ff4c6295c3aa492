"""The invites consumer: a shoot's client, once verified, is invited to the shoot's gallery.

An invite joins two streams that arrive in any order, on different partitions: the shoot
(shoot.created on `shoots`) and its client's verification (user.verified on `users`). Whichever
arrives second creates the invite. Writers are serialised (`BEGIN IMMEDIATE`), so the second always
sees the first, and the invite id is a function of (shoot, user), so it exists at most once.
It also follows the invite's life: invite.sent and invite.accepted (on `invites`).
"""

from __future__ import annotations

import sqlite3

from pydantic import BaseModel

from orchestration.consumer import Effects, OrchestrationStage
from orchestration.ids import event_id, invite_id_for, normalise_email, user_id_for
from pipeline.contracts.events import (
    INVITE_ACCEPTED,
    INVITE_SENT,
    SHOOT_CREATED,
    USER_VERIFIED,
    InviteAccepted,
    InviteCreated,
    InviteSent,
    ShootCreated,
    UserVerified,
)
from pipeline.contracts.topics import INVITES, SHOOTS, USERS
from pipeline.registry import Event


class InvitesStage(OrchestrationStage):
    """Creates one invite per (shoot, client) and tracks its status."""

    name = "invites"
    topics = (SHOOTS, USERS, INVITES)
    event_types = frozenset({SHOOT_CREATED, USER_VERIFIED, INVITE_SENT, INVITE_ACCEPTED})

    def apply(self, tx: sqlite3.Connection, event: Event[BaseModel], fx: Effects) -> None:
        payload, env = event.payload, event.envelope
        when = env.occurred_at.isoformat()
        if isinstance(payload, ShootCreated):
            email = normalise_email(payload.client_email)
            tx.execute(
                "INSERT OR IGNORE INTO invite_shoots (shoot_id, title, client_email, user_id, correlation_id, event_id)"
                " VALUES (?,?,?,?,?,?)",
                (payload.shoot_id, payload.title, email, user_id_for(email), env.correlation_id, env.event_id),
            )
            self._invite_ready(tx, fx, shoot_id=payload.shoot_id, when=when)
        elif isinstance(payload, UserVerified):
            tx.execute("INSERT OR IGNORE INTO invite_users (user_id, email, verified_at) VALUES (?,?,?)",
                       (payload.user_id, normalise_email(payload.email), when))
            self._invite_ready(tx, fx, user_id=payload.user_id, when=when)
        elif isinstance(payload, InviteSent):
            tx.execute("UPDATE invites SET status = CASE status WHEN 'accepted' THEN status ELSE 'sent' END,"
                       " sent_at = ?, message_id = ? WHERE invite_id = ?", (when, payload.message_id, payload.invite_id))
        elif isinstance(payload, InviteAccepted):
            tx.execute("UPDATE invites SET status = 'accepted', accepted_at = ? WHERE invite_id = ?",
                       (when, payload.invite_id))

    def _invite_ready(self, tx: sqlite3.Connection, fx: Effects, *, when: str,
                      shoot_id: str | None = None, user_id: str | None = None) -> None:
        """Create the invites whose shoot and verified user are both known and which do not exist yet."""
        rows = tx.execute(
            "SELECT s.shoot_id, s.user_id, s.client_email, s.correlation_id, s.event_id FROM invite_shoots s"
            " JOIN invite_users u ON u.user_id = s.user_id"
            " LEFT JOIN invites i ON i.shoot_id = s.shoot_id AND i.user_id = s.user_id"
            " WHERE i.invite_id IS NULL AND (s.shoot_id = ? OR s.user_id = ?)",
            (shoot_id, user_id),
        ).fetchall()
        for row in rows:
            invite_id = invite_id_for(row["shoot_id"], row["user_id"])
            tx.execute(
                "INSERT INTO invites (invite_id, shoot_id, user_id, email, status, correlation_id, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (invite_id, row["shoot_id"], row["user_id"], row["client_email"], "created", row["correlation_id"], when),
            )
            # The shoot started this chain, so the invite carries the shoot's correlation id and
            # names shoot.created as its cause, whichever of the two halves arrived last.
            fx.emit(
                InviteCreated(invite_id=invite_id, shoot_id=row["shoot_id"], user_id=row["user_id"],
                              email=row["client_email"]),
                event_id=event_id("invite.created", invite_id),
                correlation_id=row["correlation_id"], causation_id=row["event_id"],
            )
