"""A work queue of object keys, as controller-runtime has it.

- De-duplicating: a key added again while it waits is queued once.
- Serial per key, parallel across keys: a key being processed is not handed to another worker;
  if it is added meanwhile, it is processed again once the current run is done.
- Rate-limited requeue: a key that keeps failing waits longer each time (exponential, per key),
  and `forget` resets that once it succeeds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Per-key retry delay: `base * 2**failures`, at most `cap` (controller-runtime: 5 ms to 1000 s)."""

    base: float = 0.005
    cap: float = 1000.0

    def delay(self, failures: int) -> float:
        return min(self.cap, self.base * (2 ** min(failures, 60)))


class WorkQueue:
    def __init__(self, backoff: Backoff | None = None) -> None:
        self.backoff = backoff or Backoff()
        self._queue: deque[str] = deque()
        self._waiting: set[str] = set()  # in the queue
        self._processing: set[str] = set()
        self._dirty: set[str] = set()  # added while being processed
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._closed:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._waiting:
            self._waiting.add(key)
            self._queue.append(key)
            self._ready.set()

    def add_after(self, key: str, delay: float) -> None:
        """Add `key` once `delay` seconds have passed (an earlier pending timer wins)."""
        if delay <= 0:
            self.add(key)
            return
        existing = self._timers.get(key)
        loop = asyncio.get_running_loop()
        if existing is not None and existing.when() <= loop.time() + delay:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str) -> float:
        """Requeue after the key's back-off; the delay chosen."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = self.backoff.delay(failures)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str:
        """The next key to process; call `done(key)` when finished with it."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._waiting.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
