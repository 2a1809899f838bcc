"""A fair gate for batch lines: at most ``capacity`` lines in flight on an instance, shared by tenants in turn.

Each running batch holds a slot per line it sends upstream. When the gate is full, the waiting lines are served
round-robin across keys (a tenant), first come first served within a key: a tenant's 50,000-line batch gets
one slot in turn with a one-line batch of another tenant, instead of every slot until it ends (until 2026-11-28
the worker ran one batch at a time, oldest first, so one tenant's large batch held every other tenant's batches
back for up to its 24 h window and they expired; found in review).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairGate:
    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._held = 0
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def held(self) -> int:
        return self._held

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        await self._acquire(key)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, key: str) -> None:
        if self._held < self.capacity and not self._waiting:
            self._held += 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # granted as it was cancelled: pass the slot on
                self._release()
            raise

    def _release(self) -> None:
        self._held -= 1
        self._grant()

    def _grant(self) -> None:
        while self._held < self.capacity and self._waiting:
            key, queue = next(iter(self._waiting.items()))
            granted = queue.popleft()
            if queue:
                self._waiting.move_to_end(key)  # this key's next line waits for every other key's turn
            else:
                del self._waiting[key]
            if granted.done():  # its waiter was cancelled
                continue
            self._held += 1
            granted.set_result(None)
