"""The users consumer: a shoot's client becomes a user (created, then verified), found again by e-mail.

Reads `shoots` (shoot.created, shoot.updated) and `users` (user.created, user.updated); writes
user.created and user.verified on `users`, keyed by user id.

Verification: a client named by a photographer is verified by the platform as soon as the address is
well-formed, because the photographer vouches for it and the invite mail proves possession when it
is accepted. A sign-up flow would instead verify on a confirmation link; the events are the same.
"""

from __future__ import annotations

import sqlite3

from pydantic import BaseModel

from orchestration.consumer import Effects, OrchestrationStage
from orchestration.ids import event_id, normalise_email, user_id_for
from pipeline.contracts.events import (
    SHOOT_CREATED,
    SHOOT_UPDATED,
    USER_CREATED,
    USER_UPDATED,
    ShootCreated,
    ShootUpdated,
    UserCreated,
    UserUpdated,
    UserVerified,
)
from pipeline.contracts.topics import SHOOTS, USERS
from pipeline.registry import Event


class UsersStage(OrchestrationStage):
    """Creates or finds the client user of every shoot, and verifies new users."""

    name = "users"
    topics = (SHOOTS, USERS)
    event_types = frozenset({SHOOT_CREATED, SHOOT_UPDATED, USER_CREATED, USER_UPDATED})

    def apply(self, tx: sqlite3.Connection, event: Event[BaseModel], fx: Effects) -> None:
        payload, env = event.payload, event.envelope
        if isinstance(payload, ShootCreated | ShootUpdated):
            if payload.client_email is not None:
                self._ensure_client(tx, normalise_email(payload.client_email), event, fx)
        elif isinstance(payload, UserCreated):
            row = tx.execute("SELECT status FROM users WHERE user_id = ?", (payload.user_id,)).fetchone()
            if row is None:  # created elsewhere (sign-up): adopt it
                tx.execute(
                    "INSERT INTO users (user_id, email, role, status, correlation_id, created_at) VALUES (?,?,?,?,?,?)",
                    (payload.user_id, normalise_email(payload.email), payload.role, "created", env.correlation_id,
                     env.occurred_at.isoformat()),
                )
            elif row["status"] == "verified":
                return
            tx.execute("UPDATE users SET status = 'verified', verified_at = ? WHERE user_id = ?",
                       (env.occurred_at.isoformat(), payload.user_id))
            fx.emit(UserVerified(user_id=payload.user_id, email=payload.email),
                    event_id=event_id(env.event_id, USER_CREATED, "verified"), cause=env)
        elif isinstance(payload, UserUpdated):
            if payload.email is not None:
                tx.execute("UPDATE users SET email = ? WHERE user_id = ?", (normalise_email(payload.email), payload.user_id))
            if payload.display_name is not None:
                tx.execute("UPDATE users SET display_name = ? WHERE user_id = ?", (payload.display_name, payload.user_id))

    def _ensure_client(self, tx: sqlite3.Connection, email: str, event: Event[BaseModel], fx: Effects) -> None:
        """Find the user of `email`, or create them (user.created; verification follows)."""
        if tx.execute("SELECT 1 FROM users WHERE email = ?", (email,)).fetchone() is not None:
            return
        user_id = user_id_for(email)
        env = event.envelope
        tx.execute(
            "INSERT INTO users (user_id, email, role, status, correlation_id, created_at) VALUES (?,?,?,?,?,?)",
            (user_id, email, "client", "created", env.correlation_id, env.occurred_at.isoformat()),
        )
        fx.emit(UserCreated(user_id=user_id, email=email, role="client"),
                event_id=event_id("user.created", user_id), cause=env)
