"""A fair queue: round-robin across users, first-come within a user.

One user who sends ten questions does not make everyone else wait behind all ten.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

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


class PerOwnerLimit:
    """Counts each owner's requests in flight (waiting or running) and refuses one past `limit`.

    The fair queue stops one user from delaying others' turns; this stops one user from holding
    every thread that waits on it (an adapter's answer pool has a fixed size).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, owner: str) -> bool:
        """Count one more request for `owner`; False (nothing counted) when it is at the limit."""
        with self._lock:
            count = self._counts.get(owner, 0)
            if count >= self.limit:
                return False
            self._counts[owner] = count + 1
            return True

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
