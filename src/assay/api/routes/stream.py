"""/api/v1/events: one Server-Sent Events stream of every evaluation's state changes, for
dashboards (the web page's live list). Each event names an evaluation and what happened;
read the evaluation for its state."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from assay.api.deps import BusDep
from assay.api.strict_json import StrictJsonRoute
from assay.monitoring import ALL, EventBus
from assay.storage import STATE_CHANGES

__all__ = ["router"]

router = APIRouter(tags=["evaluations"], route_class=StrictJsonRoute)

_KEEPALIVE_SECONDS = 15.0


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def all_events(bus: BusDep) -> StreamingResponse:
    """Live state changes of all evaluations: ``event: evaluation``, data
    ``{"evaluation_id", "type"}``. No history; never ends on its own."""
    return StreamingResponse(
        _stream(bus),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(bus: EventBus) -> AsyncIterator[str]:
    # Output chunks are per-evaluation detail; this stream carries state changes.
    with bus.subscribe(ALL) as subscription:
        yield ": connected\n\n"
        while True:
            notice = await subscription.next(timeout=_KEEPALIVE_SECONDS)
            if notice is None:
                yield ": keep-alive\n\n"
            elif notice.type in STATE_CHANGES:
                data = json.dumps({"evaluation_id": notice.evaluation_id, "type": notice.type})
                yield f"event: evaluation\ndata: {data}\n\n"
