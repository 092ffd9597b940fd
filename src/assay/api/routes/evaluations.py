"""/api/v1/evaluations: submit, read, list, cancel, and stream events."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints

from assay.api.deps import BusDep, QueueDep, SettingsDep, StorageDep
from assay.api.schemas import (
    BatchCreate,
    BatchOut,
    ErrorBody,
    EvaluationCreate,
    EvaluationList,
    EvaluationOut,
    EventOut,
    NoNul,
    StoredText,
)
from assay.api.strict_json import StrictJsonRoute
from assay.config import Settings
from assay.errors import InvalidRequestError
from assay.execution_engine import resolve_request
from assay.monitoring import EventBus
from assay.storage import TERMINAL_EVENTS, EvaluationStatus, Isolation, NewEvaluation, Storage

__all__ = ["router"]

router = APIRouter(prefix="/evaluations", tags=["evaluations"], route_class=StrictJsonRoute)

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 422, 429, 503)
}
_KEEPALIVE_SECONDS = 15.0

Wait = Annotated[
    float,
    Query(
        ge=0, le=3600, description="Seconds to wait for a terminal state (capped by the server)."
    ),
]
IdempotencyKey = Annotated[
    Annotated[str, StringConstraints(max_length=255), NoNul] | None,
    Header(
        alias="Idempotency-Key",
        description="Retries with the same key return the first evaluation.",
    ),
]
EvaluationId = Annotated[StoredText, Path()]
#: Event ids are BIGINT; a larger one could not even be looked up.
LastEventId = Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=2**63 - 1)]


def _new(
    settings: Settings,
    body: EvaluationCreate,
    key: str | None,
    *,
    batch_id: str | None = None,
    isolation: Isolation = "evaluation",
) -> NewEvaluation:
    request = body.execution_request()
    resolve_request(request, settings.execution)  # raises naming the bad field
    return NewEvaluation(
        request=request,
        priority=body.priority,
        labels=body.labels,
        idempotency_key=key,
        batch_id=batch_id,
        isolation=isolation,
    )


@router.post(
    "",
    status_code=202,
    response_model=EvaluationOut,
    responses={
        200: {"model": EvaluationOut, "description": "Finished within ?wait, or a replay."},
        **_ERRORS,
    },
)
async def submit(
    body: EvaluationCreate,
    *,
    queue: QueueDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = 0,
) -> EvaluationOut:
    """Queue one evaluation (202). With ?wait=S, answer when it ends if within S seconds (200)."""
    [(evaluation, created)] = await queue.submit([_new(settings, body, idempotency_key)])
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    wait = min(wait, settings.api.max_wait_seconds)
    if wait > 0 and not evaluation.status.terminal:
        # Subscribing happens before any await, so the just-created state is still current.
        evaluation = await queue.wait(evaluation.id, wait, current=evaluation)
    if evaluation.status.terminal or not created:
        response.status_code = 200
    return EvaluationOut.of(evaluation)


@router.post("/batch", status_code=202, response_model=BatchOut, responses=_ERRORS)
async def submit_batch(
    body: BatchCreate,
    *,
    queue: QueueDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> BatchOut:
    """Queue several evaluations at once, all or none. An Idempotency-Key applies to each
    evaluation as ``<key>:<index>``. With ``isolation: batch`` they may share sandboxes of
    this batch alone, reset between programs."""
    limit = settings.api.max_batch_size
    if len(body.evaluations) > limit:
        raise InvalidRequestError(
            f"batch has {len(body.evaluations)} evaluations; the limit is {limit}",
            field="evaluations",
        )
    batch_id = str(uuid.uuid4())
    new = []
    for index, item in enumerate(body.evaluations):
        key = None if idempotency_key is None else f"{idempotency_key}:{index}"
        try:
            new.append(_new(settings, item, key, batch_id=batch_id, isolation=body.isolation))
        except InvalidRequestError as exc:
            raise InvalidRequestError(
                f"evaluations[{index}]: {exc.message}", field=f"evaluations[{index}].{exc.field}"
            ) from exc
    results = await queue.submit(new)
    first = results[0][0]
    return BatchOut(
        batch_id=first.batch_id or batch_id,
        isolation=first.isolation,
        evaluations=[EvaluationOut.of(evaluation) for evaluation, _ in results],
    )


@router.get("", response_model=EvaluationList, responses=_ERRORS)
async def list_evaluations(
    *,
    storage: StorageDep,
    settings: SettingsDep,
    status: Annotated[list[EvaluationStatus] | None, Query(description="Repeatable.")] = None,
    label: Annotated[
        list[StoredText] | None, Query(description="key:value, repeatable; all must match.")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> EvaluationList:
    """Newest first, without each evaluation's request; follow ``next_cursor`` for more."""
    labels: dict[str, str] = {}
    for item in label or []:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise InvalidRequestError(f"label filter {item!r} must be key:value", field="label")
        labels[key] = value
    size = min(limit or settings.api.default_page_size, settings.api.max_page_size)
    page = await storage.list_evaluations(
        statuses=status or [], labels=labels, cursor=cursor, limit=size
    )
    return EvaluationList(
        items=[EvaluationOut.of(e, with_request=False) for e in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/{evaluation_id}", response_model=EvaluationOut, responses=_ERRORS)
async def get_evaluation(
    evaluation_id: EvaluationId,
    *,
    storage: StorageDep,
    queue: QueueDep,
    settings: SettingsDep,
    wait: Wait = 0,
) -> EvaluationOut:
    """One evaluation. With ?wait=S, answer as soon as it ends, or after S seconds."""
    wait = min(wait, settings.api.max_wait_seconds)
    if wait > 0:
        return EvaluationOut.of(await queue.wait(evaluation_id, wait))
    return EvaluationOut.of(await storage.get(evaluation_id))


@router.post("/{evaluation_id}/cancel", response_model=EvaluationOut, responses=_ERRORS)
async def cancel(evaluation_id: EvaluationId, queue: QueueDep) -> EvaluationOut:
    """Cancel a queued or running evaluation (its sandbox is killed). An evaluation that has
    already ended is returned unchanged."""
    return EvaluationOut.of(await queue.cancel(evaluation_id))


@router.get(
    "/{evaluation_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
)
async def events(
    evaluation_id: EvaluationId,
    storage: StorageDep,
    bus: BusDep,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """Server-Sent Events: the evaluation's past events, then live ones (output chunks
    while it runs); the stream ends after the terminal event. Resumes after Last-Event-ID."""
    await storage.get(evaluation_id)  # 404 before the stream starts
    return StreamingResponse(
        _stream(storage, bus, evaluation_id, last_event_id or 0),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    storage: Storage, bus: EventBus, evaluation_id: str, after: int
) -> AsyncIterator[str]:
    with bus.subscribe(evaluation_id) as subscription:
        while True:
            batch = await storage.events(evaluation_id, after=after, limit=500)
            for event in batch:
                after = event.id
                payload = EventOut.of(event).model_dump_json()
                yield f"id: {event.id}\nevent: {event.type}\ndata: {payload}\n\n"
                if event.type in TERMINAL_EVENTS:
                    return
            if len(batch) == 500:
                continue
            notice = await subscription.next(timeout=_KEEPALIVE_SECONDS)
            if notice is None:
                yield f": keep-alive {json.dumps(evaluation_id)}\n\n"
