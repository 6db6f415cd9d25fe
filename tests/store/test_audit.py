"""The audit log keeps events newest first and pages by id."""

from __future__ import annotations

import pytest

from lifecycle.store import Database
from lifecycle.store.audit import list_events, record_event


def test_events_are_listed_newest_first_and_paged(database: Database) -> None:
    with database.session() as session:
        for i in range(5):
            record_event(session, "User alice", "job.deploy", f"job adder 1.0.{i}", {"i": i})
        record_event(session, "system", "job.delete", "job adder 1.0.0")

    with database.session() as session:
        events = list_events(session, limit=3)
        assert [e.target for e in events] == ["job adder 1.0.0", "job adder 1.0.4", "job adder 1.0.3"]
        assert events[1].details == {"i": 4} and events[1].time.tzinfo is not None
        rest = list_events(session, before_id=events[-1].id)
        assert [e.details["i"] for e in rest] == [2, 1, 0]
        assert [e.action for e in list_events(session, action="job.delete")] == ["job.delete"]
        assert len(list_events(session, actor="User alice")) == 5


def test_an_event_is_kept_only_with_the_change_it_records(database: Database) -> None:
    with pytest.raises(RuntimeError), database.session() as session:
        record_event(session, "User alice", "job.delete", "job adder 1.0.0")
        raise RuntimeError("the delete failed")
    with database.session() as session:
        assert list_events(session) == []
