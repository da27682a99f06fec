"""The asyncio flavour, standard library only: each call of :class:`~deriver_live.DeriverLive`
runs in a worker thread (``asyncio.to_thread``), so the event loop never blocks; watches are
async iterators. Same names, same results, same errors.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator, Optional, TypeVar

from ._types import DeriverStatus
from .client import DeriverLive

T = TypeVar("T")
_DONE = object()


async def _iterate(make: Any) -> AsyncIterator[Any]:
    iterator: Iterator[Any] = await asyncio.to_thread(make)
    try:
        while True:
            item = await asyncio.to_thread(next, iterator, _DONE)
            if item is _DONE:
                return
            yield item
    finally:
        await asyncio.to_thread(iterator.close)  # type: ignore[attr-defined]


class AsyncDeriverLive:
    """``await client.wait_for_idle(...)``, ``async for status in client.watch_deriver_status()``."""

    def __init__(
        self, url: str, token: Optional[str] = None, workspace_id: str = "default", timeout: float = 30.0
    ) -> None:
        self.sync = DeriverLive(url, token, workspace_id, timeout)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.sync, name)
        if not callable(method) or name.startswith("_") or name in ("session", "watch_deriver_status"):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    def watch_deriver_status(self, *args: Any, **kwargs: Any) -> AsyncIterator[DeriverStatus]:
        return _iterate(lambda: self.sync.watch_deriver_status(*args, **kwargs))
