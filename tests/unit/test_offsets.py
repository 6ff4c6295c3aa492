"""Lowest-unfinished-offset bookkeeping."""

import pytest

from pipeline.offsets import PartitionOffsets


def test_nothing_to_commit_before_anything_finishes() -> None:
    offsets = PartitionOffsets()
    offsets.received(10)
    assert offsets.committable() is None


def test_commit_moves_to_lowest_unfinished_when_work_finishes_out_of_order() -> None:
    offsets = PartitionOffsets()
    for o in (10, 11, 12, 13):
        offsets.received(o)
    offsets.finished(12)
    offsets.finished(13)
    assert offsets.committable() is None  # 10 still running
    offsets.finished(10)
    assert offsets.committable() == 11
    offsets.committed = 11
    assert offsets.committable() is None  # nothing new since
    offsets.finished(11)
    assert offsets.committable() == 14
    assert offsets.in_flight == 0


def test_gaps_in_offsets_are_fine() -> None:
    # Transaction markers and compaction leave gaps: the commit follows what was received.
    offsets = PartitionOffsets()
    offsets.received(5)
    offsets.finished(5)
    offsets.received(9)
    assert offsets.committable() == 9
    assert offsets.in_flight == 1


def test_out_of_order_receipt_is_a_bug() -> None:
    offsets = PartitionOffsets()
    offsets.received(5)
    with pytest.raises(ValueError):
        offsets.received(4)
