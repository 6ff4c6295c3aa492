"""Deterministic ids of the business flow: the same facts always give the same id.

That is what makes "create or find" idempotent across redeliveries and replays: a user is found by
the id of their e-mail address, an invite by the id of (shoot, user).
"""

from __future__ import annotations

import hashlib

from pipeline.envelope import deterministic_id


def normalise_email(email: str) -> str:
    """Addresses compare case-insensitively (in practice, for every provider that matters)."""
    return email.strip().lower()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def user_id_for(email: str) -> str:
    """The user id of an e-mail address."""
    return f"u-{_digest('user', normalise_email(email))}"


def invite_id_for(shoot_id: str, user_id: str) -> str:
    """The one invite of a user to a shoot."""
    return f"inv-{_digest('invite', shoot_id, user_id)}"


def event_id(*parts: str) -> str:
    """The id of an event emitted because of `parts` (its cause and what it is)."""
    return deterministic_id(*parts)
