"""The invite sender: every invite.created becomes one mail to the client, then invite.sent.

The mail is queued in the event's transaction and sent by the relay; invite.sent is queued in the
transaction that records the server's 250, so it is published once per mail, never before it.
"""

from __future__ import annotations

import sqlite3

from pydantic import BaseModel

from orchestration.consumer import Effects, OrchestrationStage
from orchestration.gallery_links import gallery_url
from orchestration.ids import event_id
from orchestration.mail import Mail, message_id
from pipeline.contracts.events import INVITE_CREATED, InviteCreated, InviteSent
from pipeline.contracts.topics import INVITES
from pipeline.registry import Event


class InviteSenderStage(OrchestrationStage):
    """Mails invites."""

    name = "invite-sender"
    topics = (INVITES,)
    event_types = frozenset({INVITE_CREATED})

    def apply(self, tx: sqlite3.Connection, event: Event[BaseModel], fx: Effects) -> None:
        invite = event.payload
        assert isinstance(invite, InviteCreated)
        body = (
            "Hello,\n\nyou are invited to the gallery of shoot {shoot}.\n"
            "Open it here: {link}\n\n"
            "Accept the invite with: darkroom invite accept {invite}\n\n-- darkroom\n"
        ).format(shoot=invite.shoot_id, invite=invite.invite_id, link=gallery_url(self.settings, invite.invite_id))
        mail = Mail(
            message_id=message_id("invite", invite.invite_id), recipient=invite.email,
            subject=f"You are invited to the gallery of {invite.shoot_id}", body=body,
            correlation_id=event.envelope.correlation_id, cause_event_id=event.envelope.event_id,
        )
        fx.mail("invite", f"{invite.invite_id}|{invite.shoot_id}", mail)

    def on_mail_sent(self, tx: sqlite3.Connection, row: sqlite3.Row, fx: Effects) -> None:
        invite_id, shoot_id = str(row["ref"]).split("|", 1)
        fx.emit(
            InviteSent(invite_id=invite_id, shoot_id=shoot_id, email=row["recipient"], message_id=row["message_id"]),
            event_id=event_id(row["cause_event_id"], "invite.sent"),
            correlation_id=row["correlation_id"], causation_id=row["cause_event_id"],
        )
