"""The event catalogue: every ADR-009 event, its topic and key rule, round trips through the registry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from pipeline.contracts.events import (
    CATALOGUE,
    H_RENDITION,
    FileDeleted,
    FileProcessed,
    GalleryUpdated,
    InviteAccepted,
    InviteCreated,
    InviteSent,
    ShootCompleted,
    ShootCreated,
    ShootDelivered,
    ShootUpdated,
    UserCreated,
    UserUpdated,
    UserVerified,
    default_registry,
    event_message,
)
from pipeline.envelope import headers_dict
from pipeline.errors import InvalidEvent

ADR_009 = {
    "shoot.created", "shoot.updated", "shoot.completed", "shoot.delivered",
    "user.created", "user.verified", "user.updated",
    "invite.created", "invite.sent", "invite.accepted",
    "file.uploaded", "file.processed", "file.deleted", "gallery.updated",
    # Gallery access, ADR-009's high-volume events (issue 15).
    "gallery.viewed", "file.downloaded",
}
KEY_RULE = {"shoots": "shoot_id", "users": "user_id", "invites": "invite_id", "files": "file_id", "galleries": "shoot_id"}

SAMPLES: list[BaseModel] = [
    ShootCreated(shoot_id="s1", title="Wedding", client_email="a@example.com"),
    ShootUpdated(shoot_id="s1", title="Wedding 2"),
    ShootCompleted(shoot_id="s1", photo_count=3),
    ShootDelivered(shoot_id="s1"),
    UserCreated(user_id="u1", email="a@example.com"),
    UserVerified(user_id="u1", email="a@example.com"),
    UserUpdated(user_id="u1", display_name="Anna"),
    InviteCreated(invite_id="i1", shoot_id="s1", user_id="u1", email="a@example.com"),
    InviteSent(invite_id="i1", shoot_id="s1", email="a@example.com", message_id="<x@y>"),
    InviteAccepted(invite_id="i1", shoot_id="s1", user_id="u1"),
    FileProcessed(file_id="f1", shoot_id="s1", rendition="web", bucket="b", key="k", width=1, height=1, bytes=1,
                  format="jpeg", source_event_id="e"),
    FileDeleted(file_id="f1", shoot_id="s1"),
    GalleryUpdated(shoot_id="s1", file_id="f1", change="removed", photo_count=0, updated_at=datetime.now(UTC)),
]


def test_the_catalogue_holds_every_event_of_adr_009_once_with_the_key_rule_of_its_topic() -> None:
    assert sorted(e.event_type for e in CATALOGUE) == sorted(ADR_009)
    for entry in CATALOGUE:
        assert entry.key_field == KEY_RULE[entry.topic], entry.event_type
        assert entry.key_field in entry.model.model_fields


@pytest.mark.parametrize("payload", SAMPLES, ids=lambda p: type(p).__name__)
def test_every_event_round_trips_with_its_topic_key_and_headers(payload: BaseModel) -> None:
    envelope, message = event_message(payload, event_id="e-1", producer="test", correlation_id="c-1")
    spec = next(e for e in CATALOGUE if e.model is type(payload))
    assert message.topic == spec.topic
    assert message.key == str(getattr(payload, spec.key_field)).encode()
    headers = headers_dict(message.headers)
    assert headers["eventType"] == spec.event_type.encode() and headers["version"] == b"1.0.0"
    event = default_registry().decode(message.value)
    assert event.payload == payload and event.envelope.correlation_id == "c-1"
    assert (H_RENDITION in headers) == isinstance(payload, FileProcessed)


def test_an_invalid_payload_is_an_invalid_event_with_the_field_named() -> None:
    _, message = event_message(ShootDelivered(shoot_id="s1"), event_id="e", producer="t")
    broken = message.value.replace(b'"shootId":"s1"', b'"shootId":"../etc"')
    with pytest.raises(InvalidEvent, match="shootId"):
        default_registry().decode(broken)


def test_causation_can_be_named_by_id_when_the_cause_is_a_database_row() -> None:
    envelope, _ = event_message(ShootDelivered(shoot_id="s1"), event_id="e", producer="t",
                                correlation_id="c", causation_id="cause-1")
    assert (envelope.correlation_id, envelope.causation_id) == ("c", "cause-1")
