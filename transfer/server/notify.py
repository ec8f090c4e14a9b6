"""Wakes the watch streams of the schools a commit touched.

The writer calls `publish` after each commit with the events it produced;
each subscription is a flag its stream re-reads the database on, so no event
is ever carried in memory and none can be lost between a read and a wait.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import TracebackType

from transfer.domain.model import TransferEvent


class Subscription:
    def __init__(self, notifier: Notifier, school: str) -> None:
        self._notifier = notifier
        self.school = school
        self._flag = asyncio.Event()

    def clear(self) -> None:
        self._flag.clear()

    def wake(self) -> None:
        self._flag.set()

    async def wait(self) -> bool:
        """Wait for a change; False once the node is shutting down.

        A closed notifier answers at once: its wake-up may have been cleared
        by a stream that subscribed, or cleared its flag, after the close."""
        if not self._notifier.closed:
            await self._flag.wait()
        return not self._notifier.closed

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._notifier._unsubscribe(self)


class Notifier:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self.closed = False

    def subscribe(self, school: str) -> Subscription:
        sub = Subscription(self, school)
        self._subs[school].add(sub)
        if self.closed:
            sub.wake()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.school)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.school]

    def publish(self, items: list[object]) -> None:
        for item in items:
            if isinstance(item, TransferEvent):
                for school in (item.transfer.from_school, item.transfer.to_school):
                    for sub in self._subs.get(school, ()):
                        sub.wake()

    def wake_all(self) -> None:
        """Wake every stream to re-read (when a commit may have happened unannounced)."""
        for subs in self._subs.values():
            for sub in subs:
                sub.wake()

    def close(self) -> None:
        self.closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.wake()

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())
