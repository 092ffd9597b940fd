"""Live sandboxes' records and events in SqlStorage, on a real SQLite file and on a real
PostgreSQL database (``test_storage``'s fixtures; hence F811 off): ownership, state,
ordering, idempotent ends, event pages."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from assay.errors import NotFoundError, StorageError
from assay.storage import SandboxEventType, SandboxState
from assay.storage.sql import SqlStorage
from tests.integration.test_storage import (
    database_url,  # noqa: F401 - the fixtures: a fresh database of each kind
    storage,  # noqa: F401
)

pytestmark = [pytest.mark.integration]


def info(sandbox_id: str, **labels: str) -> dict[str, Any]:
    """A sandbox's info as the engine gives it (JSON)."""
    return {
        "id": sandbox_id,
        "state": "running",
        "created_at": "2026-12-02T05:00:00Z",
        "memory_mb": 512,
        "cpus": 1.0,
        "pids_limit": 256,
        "idle_timeout_seconds": 900.0,
        "lifetime_seconds": 3600.0,
        "labels": labels,
        "image": "assay-sandbox:5",
        "user": "sandbox",
        "runtime": "runc",
        "last_used_at": "2026-12-02T05:00:00Z",
        "expires_at": "2026-12-02T05:15:00Z",
        "warm": True,
        "commands": 0,
    }


async def test_a_sandbox_is_stored_running_with_its_created_event(storage: SqlStorage) -> None:
    record = await storage.add_sandbox(info("sb-1", task="t"), api_key_id=7)
    assert (record.id, record.api_key_id, record.state) == ("sb-1", 7, SandboxState.RUNNING)
    assert record.labels == {"task": "t"} and record.info == info("sb-1", task="t")
    assert record.ended_at is None and record.end_reason is None
    assert record.created_at.tzinfo is not None
    assert await storage.get_sandbox_record("sb-1") == record
    [created] = await storage.sandbox_events("sb-1")
    assert created.type is SandboxEventType.CREATED and created.sandbox_id == "sb-1"
    assert created.data["limits"] == {
        "memory_mb": 512,
        "cpus": 1.0,
        "pids_limit": 256,
        "idle_timeout_seconds": 900.0,
        "lifetime_seconds": 3600.0,
    }
    assert (created.data["user"], created.data["warm"]) == ("sandbox", True)
    with pytest.raises(StorageError, match="already stored"):
        await storage.add_sandbox(info("sb-1"), api_key_id=None)


async def test_unknown_sandboxes_are_not_found(storage: SqlStorage) -> None:
    with pytest.raises(NotFoundError):
        await storage.get_sandbox_record("nope")
    with pytest.raises(NotFoundError):
        await storage.end_sandbox_record("nope", "deleted", datetime.now(UTC))
    with pytest.raises(NotFoundError):
        await storage.add_sandbox_event("nope", SandboxEventType.EXEC, {})
    with pytest.raises(NotFoundError):
        await storage.sandbox_events("nope")


async def test_ending_is_idempotent_and_keeps_the_first_reason(storage: SqlStorage) -> None:
    await storage.add_sandbox(info("sb"), api_key_id=None)
    at = datetime.now(UTC) - timedelta(seconds=30)
    ended, first = await storage.end_sandbox_record("sb", "idle", at)
    assert first and ended.state is SandboxState.ENDED
    assert (ended.end_reason, ended.ended_at) == ("idle", at)
    again, second = await storage.end_sandbox_record("sb", "deleted", datetime.now(UTC))
    assert not second and again == ended
    events = await storage.sandbox_events("sb")
    assert [e.type for e in events] == ["created", "ended"]
    assert events[-1].data == {"reason": "idle"} and events[-1].at == at


async def test_concurrent_ends_record_one_ended_event(storage: SqlStorage) -> None:
    await storage.add_sandbox(info("sb"), api_key_id=None)
    now = datetime.now(UTC)
    results = await asyncio.gather(
        *(storage.end_sandbox_record("sb", f"reason-{i}", now) for i in range(8))
    )
    assert sum(ended for _, ended in results) == 1
    events = await storage.sandbox_events("sb")
    assert [e.type for e in events].count(SandboxEventType.ENDED) == 1


async def test_counting_and_listing_by_key_and_state(storage: SqlStorage) -> None:
    for sandbox_id, key in [("a1", 1), ("a2", 1), ("b1", 2), ("open", None), ("a3", 1)]:
        await storage.add_sandbox(info(sandbox_id), api_key_id=key)
    await storage.end_sandbox_record("a2", "deleted", datetime.now(UTC))
    assert await storage.count_running_sandboxes(1) == 2
    assert await storage.count_running_sandboxes(2) == 1
    assert await storage.count_running_sandboxes(None) == 4, "None counts every key's"
    mine = await storage.list_sandbox_records(api_key_id=1)
    assert [r.id for r in mine] == ["a3", "a1", "a2"], "running first, then newest first"
    ended = await storage.list_sandbox_records(api_key_id=1, state=SandboxState.ENDED)
    assert [r.id for r in ended] == ["a2"]
    running = await storage.list_sandbox_records(state=SandboxState.RUNNING)
    assert [r.id for r in running] == ["a3", "open", "b1", "a1"]
    assert len(await storage.list_sandbox_records(limit=2)) == 2


async def test_events_page_after_a_sequence_number(storage: SqlStorage) -> None:
    await storage.add_sandbox(info("sb"), api_key_id=None)
    await storage.add_sandbox(info("other"), api_key_id=None)
    recorded = [
        await storage.add_sandbox_event("sb", SandboxEventType.EXEC, {"returncode": i})
        for i in range(5)
    ]
    await storage.add_sandbox_event("other", SandboxEventType.READ_FILE, {"path": "x"})
    assert [e.seq for e in recorded] == sorted(e.seq for e in recorded)
    assert all(e.type is SandboxEventType.EXEC and e.at.tzinfo for e in recorded)
    everything = await storage.sandbox_events("sb")
    assert [e.type for e in everything] == ["created", *["exec"] * 5]
    page = await storage.sandbox_events("sb", after=recorded[1].seq, limit=2)
    assert [e.data["returncode"] for e in page] == [2, 3]
    assert await storage.sandbox_events("sb", after=recorded[-1].seq) == []
