"""A fair queue: round-robin across users, first-come within a user.

One user who sends ten questions does not make everyone else wait behind all ten.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Generic, Literal, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._lanes: OrderedDict[str, deque[T]] = OrderedDict()
        self._cond = threading.Condition()

    def put(self, owner: str, item: T) -> None:
        with self._cond:
            self._lanes.setdefault(owner, deque()).append(item)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T | None:
        """The next item in round-robin order, or None after `timeout` seconds with nothing queued."""
        return self.take(lambda _item: True, timeout)

    def take(self, accept: Callable[[T], bool], timeout: float | None = None) -> T | None:
        """The next item if `accept(item)`; None when it is refused (it stays next: no item
        overtakes it) or after `timeout` seconds with nothing queued."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._lanes), timeout):
                return None
            owner, lane = next(iter(self._lanes.items()))
            if not accept(lane[0]):
                return None
            item = lane.popleft()
            del self._lanes[owner]
            if lane:  # the owner goes to the back of the line
                self._lanes[owner] = lane
            self._cond.notify_all()
            return item

    def remove(self, item: T) -> bool:
        """Take `item` out of the queue (its asker left); False if it was not queued (taken already)."""
        with self._cond:
            for owner, lane in self._lanes.items():
                if any(queued is item for queued in lane):
                    lane.remove(item)
                    if not lane:
                        del self._lanes[owner]
                    self._cond.notify_all()
                    return True
            return False

    def position(self, item: T) -> int | None:
        """How many items will be served before `item` (0 = next), or None if not queued."""
        with self._cond:
            return _position(list(self._lanes.values()), item)

    def wait_changed(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)

    def __len__(self) -> int:
        with self._cond:
            return sum(len(lane) for lane in self._lanes.values())


def _position(lanes: list[deque[T]], item: T) -> int | None:
    # Simulate round-robin service order without mutating the real lanes.
    lanes = [deque(lane) for lane in lanes]
    served = 0
    while lanes:
        next_round: list[deque[T]] = []
        for lane in lanes:
            if lane.popleft() is item:
                return served
            served += 1
            if lane:
                next_round.append(lane)
        lanes = next_round
    return None


class InFlightLimit:
    """Counts requests in flight (waiting or running), per owner and in all, and refuses one past
    either limit.

    The fair queue stops one user from delaying others' turns; this stops one user, or a crowd,
    from holding every thread that waits on an answer (an adapter's answer pool has `total` threads:
    an admitted answer always gets one at once, so nothing waits in a pool's own queue).
    """

    def __init__(self, per_owner: int, total: int) -> None:
        self.per_owner, self.total = per_owner, total
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, owner: str) -> Literal["admitted", "owner busy", "all busy"]:
        """Count one more request for `owner`, or say which limit refuses it (nothing counted)."""
        with self._lock:
            count = self._counts.get(owner, 0)
            if count >= self.per_owner:
                return "owner busy"
            if sum(self._counts.values()) >= self.total:
                return "all busy"
            self._counts[owner] = count + 1
            return "admitted"

    def release(self, owner: str) -> None:
        with self._lock:
            count = self._counts.get(owner, 0) - 1
            if count > 0:
                self._counts[owner] = count
            else:
                self._counts.pop(owner, None)  # idle owners leave no entry behind

    def count(self, owner: str) -> int:
        with self._lock:
            return self._counts.get(owner, 0)


class HeldStream(Iterator[T]):
    """A stream that holds a slot until it ends, fails, is closed or is dropped unstarted (an
    adapter that never iterates an answer must not keep its user's slot)."""

    def __init__(self, items: Iterator[T], release: Callable[[], None]) -> None:
        self._items, self._release = items, release
        self._held = True

    def __next__(self) -> T:
        try:
            return next(self._items)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        held, self._held = self._held, False
        if held:
            try:
                close = getattr(self._items, "close", None)
                if close is not None:
                    close()
            finally:
                self._release()

    def __del__(self) -> None:
        self.close()
