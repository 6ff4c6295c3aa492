"""The outbox relay's mark record: what it writes is what it reads back, and nothing else passes for one."""

from __future__ import annotations

import pytest

from orchestration.outbox_marks import mark_record, parse_mark
from pipeline.contracts.topics import OUTBOX_MARKS, default_topic_specs


@pytest.mark.parametrize("next_seq", [0, 1, 41, 2**40])
def test_a_mark_record_round_trips(next_seq: int) -> None:
    key, value = mark_record("darkroom.outbox.gallery.0123456789ab", next_seq)
    assert key == b"darkroom.outbox.gallery.0123456789ab"
    assert parse_mark(value) == next_seq


def test_a_tombstone_is_no_mark() -> None:
    assert parse_mark(None) is None


@pytest.mark.parametrize("value", [b"{}", b'{"next": -1}', b'{"next": "3"}', b"[3]", b'{"next": 1.5}'])
def test_anything_else_is_refused_rather_than_taken_for_a_mark(value: bytes) -> None:
    with pytest.raises(ValueError, match="not an outbox mark"):
        parse_mark(value)


def test_the_mark_topic_is_compacted_with_one_partition() -> None:
    [spec] = [s for s in default_topic_specs(partitions=12) if s.name == OUTBOX_MARKS]
    assert spec.partitions == 1  # relays always write and read partition 0
    assert spec.config["cleanup.policy"] == "compact"
