"""The event bus carried between processes by Redis pub/sub: platform replicas sharing one
database see each other's notices (an SSE client on one replica follows an evaluation run by
another; a cancel received by one reaches the one running it).

Notices stay hints, as in-process: storage is the source of truth and subscribers re-read it.
So a notice lost while Redis restarts costs a subscriber at most its keep-alive interval
(SSE streams re-read storage every 15 s) and loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import TYPE_CHECKING

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from assay.monitoring.bus import EventBus

if TYPE_CHECKING:
    from assay.storage import Evaluation

__all__ = ["RedisEventBus"]

logger = logging.getLogger(__name__)

CHANNEL = "assay:notices"
_RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


class RedisEventBus(EventBus):
    """An :class:`EventBus` whose notices also go to, and come from, other processes."""

    def __init__(self, url: str, *, queue_size: int = 1000) -> None:
        super().__init__(queue_size=queue_size)
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=3,
            socket_timeout=10,
            # A connection left stale by a Redis restart is retried on a new one.
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self._origin = secrets.token_hex(8)
        self._sending: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        """Begin receiving other processes' notices; waits (up to 5 s) until subscribed."""
        self._listener = asyncio.create_task(self._listen(), name="assay-redis-bus")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 5)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        await self._client.aclose()

    def publish(self, evaluation_id: str, type_: str, evaluation: Evaluation | None = None) -> None:
        super().publish(evaluation_id, type_, evaluation)
        message = json.dumps({"o": self._origin, "id": evaluation_id, "type": type_})
        task = asyncio.get_running_loop().create_task(self._send(message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, message: str) -> None:
        try:
            await self._client.publish(CHANNEL, message)
        except RedisError as exc:  # subscribers elsewhere re-read storage on their own
            logger.warning("could not publish a notice to Redis: %s", exc)

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._listening.set()
                    if failures:
                        logger.warning("receiving notices from Redis again")
                    failures = 0
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._deliver(message.get("data"))
            except (RedisError, OSError) as exc:
                delay = _RECONNECT_SECONDS[min(failures, len(_RECONNECT_SECONDS) - 1)]
                if failures == 0:
                    logger.warning("lost Redis (%s); reconnecting", exc)
                failures += 1
                await asyncio.sleep(delay)

    def _deliver(self, data: object) -> None:
        try:
            notice = json.loads(data) if isinstance(data, bytes | str) else None
        except ValueError:
            return
        if not isinstance(notice, dict) or notice.get("o") == self._origin:
            return  # our own: already delivered here
        evaluation_id, type_ = notice.get("id"), notice.get("type")
        if isinstance(evaluation_id, str) and isinstance(type_, str):
            super().publish(evaluation_id, type_)
