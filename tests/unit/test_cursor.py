"""advance_cursor: how a lease's cursor moves after a batch (pure, no database)."""

from __future__ import annotations

from typing import Any

from floyo_pipeline.engine.checkpoints import Lease, Read, advance_cursor, moved


def row(txid: int, row_id: int, partition: int = 3) -> dict[str, Any]:
    return {"pipeline_txid": txid, "id": row_id, "pipeline_partition": partition}


def lease(txid: int = 0, row_id: int = 0, pending: dict[int, int] | None = None) -> Lease:
    return Lease("c", "telemetry_events", 3, 1, txid, row_id, dict(pending or {}))


NOTHING_LATE = Read([], set(), True)


def test_forward_rows_move_the_position_to_the_last_row_read() -> None:
    forward = Read([row(10, 5), row(12, 7, partition=9)], set(), True)
    after = advance_cursor(lease(), NOTHING_LATE, forward, processed=1)
    # The read covered every leased partition up to its last row, whichever partition that was in.
    assert after.position == (12, 7)
    assert after.processed == 1


def test_transactions_open_below_the_new_position_become_pending() -> None:
    forward = Read([row(20, 9)], {15, 25}, True)
    after = advance_cursor(lease(10, 1), NOTHING_LATE, forward, processed=1)
    assert after.pending == {15: 0}  # 25 is above the position: its rows will come forward


def test_late_rows_advance_their_pending_entry_and_a_finished_transaction_is_forgotten() -> None:
    before = lease(20, 9, {15: 0, 17: 0})
    late = Read([row(15, 4), row(15, 6), row(17, 8, partition=4)], {17}, True)
    after = advance_cursor(before, late, Read([], set(), True), processed=2)
    # 15 finished in the late read's snapshot and all its rows were read: forgotten; 17 is still open
    # (and its row was of another partition).
    assert after.pending == {17: 0}
    assert after.position == (20, 9)


def test_pending_transactions_are_kept_while_the_late_read_was_cut_short() -> None:
    before = lease(20, 9, {15: 0})
    late = Read([row(15, 4)], set(), complete=False)
    after = advance_cursor(before, late, Read([], set(), False), processed=1)
    assert after.pending == {15: 4}


def test_the_position_never_moves_back() -> None:
    forward = Read([row(5, 1)], set(), True)
    assert advance_cursor(lease(10, 3), NOTHING_LATE, forward, processed=0).position == (10, 3)


def test_moved_compares_positions_and_pending() -> None:
    a = {("c", 3): lease(1, 1)}
    assert not moved(a, {("c", 3): lease(1, 1)})
    assert moved(a, {("c", 3): lease(1, 2)})
    assert moved(a, {("c", 3): lease(1, 1, {4: 0})})
