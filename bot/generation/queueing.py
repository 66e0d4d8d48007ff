"""A fair queue: round-robin across workspaces, then across users within a workspace, first-come
within a user.

One user who sends ten questions does not make everyone else wait behind all ten, and one workspace
whose hundred users ask at once does not make another workspace wait behind all of them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Lanes = OrderedDict[str, OrderedDict[str, deque[T]]]  # group -> owner -> items, each in turn order


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._groups: Lanes[T] = OrderedDict()
        self._cond = threading.Condition()

    def put(self, owner: str, item: T, group: str = "") -> None:
        """Queue `item` for `owner` (a user) of `group` (their workspace or server)."""
        with self._cond:
            self._groups.setdefault(group, OrderedDict()).setdefault(owner, deque()).append(item)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T | None:
        """The next item in round-robin order, or None after `timeout` seconds with nothing queued."""
        return self.take(lambda _item: True, timeout)

    def take(self, accept: Callable[[T], bool], timeout: float | None = None) -> T | None:
        """The next item if `accept(item)`; None when it is refused (it stays next: no item
        overtakes it) or after `timeout` seconds with nothing queued."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._groups), timeout):
                return None
            if not accept(_head(self._groups)):
                return None
            item = _pop(self._groups)
            self._cond.notify_all()
            return item

    def remove(self, item: T) -> bool:
        """Take `item` out of the queue (its asker left); False if it was not queued (taken already)."""
        with self._cond:
            for group, lanes in self._groups.items():
                for owner, lane in lanes.items():
                    at = next((i for i, queued in enumerate(lane) if queued is item), None)
                    if at is not None:  # by identity: two items may compare equal
                        del lane[at]
                        if not lane:
                            del lanes[owner]
                        if not lanes:
                            del self._groups[group]
                        self._cond.notify_all()
                        return True
            return False

    def position(self, item: T) -> int | None:
        """How many items will be served before `item` (0 = next), or None if not queued."""
        with self._cond:
            groups: Lanes[T] = OrderedDict(
                (g, OrderedDict((o, deque(lane)) for o, lane in lanes.items())) for g, lanes in self._groups.items()
            )
        served = 0
        while groups:  # the service order, simulated on a copy
            if _pop(groups) is item:
                return served
            served += 1
        return None

    def wait_changed(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)

    def __len__(self) -> int:
        with self._cond:
            return sum(len(lane) for lanes in self._groups.values() for lane in lanes.values())


def _head(groups: Lanes[T]) -> T:
    lanes = next(iter(groups.values()))
    return next(iter(lanes.values()))[0]


def _pop(groups: Lanes[T]) -> T:
    """The next item; its owner goes to the back of its group's line, and the group to the back of all."""
    group, lanes = next(iter(groups.items()))
    owner, lane = next(iter(lanes.items()))
    item = lane.popleft()
    del lanes[owner]
    if lane:
        lanes[owner] = lane
    del groups[group]
    if lanes:
        groups[group] = lanes
    return item


class InFlightLimit:
    """Counts requests in flight (waiting or running), per owner, per group and in all, and refuses
    one past any limit.

    The fair queue stops one user or workspace from delaying others' turns; this stops one user, one
    workspace's crowd, or a crowd from everywhere, from holding every thread that waits on an answer
    (an adapter's answer pool has `total` threads: an admitted answer always gets one at once, so
    nothing waits in a pool's own queue). A group (a workspace or server) holds `per_group` at most,
    so the rest stays free for the others.
    """

    def __init__(self, per_owner: int, total: int, per_group: int | None = None) -> None:
        self.per_owner, self.total = per_owner, total
        self.per_group = total if per_group is None else per_group
        self._counts: dict[str, int] = {}
        self._groups: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, owner: str, group: str = "") -> Literal["admitted", "owner busy", "group busy", "all busy"]:
        """Count one more request for `owner` of `group`, or say which limit refuses it (nothing counted)."""
        with self._lock:
            count = self._counts.get(owner, 0)
            if count >= self.per_owner:
                return "owner busy"
            if sum(self._counts.values()) >= self.total:
                return "all busy"
            if self._groups.get(group, 0) >= self.per_group:
                return "group busy"
            self._counts[owner] = count + 1
            self._groups[group] = self._groups.get(group, 0) + 1
            return "admitted"

    def release(self, owner: str, group: str = "") -> None:
        with self._lock:
            for counts, key in ((self._counts, owner), (self._groups, group)):
                left = counts.get(key, 0) - 1
                if left > 0:
                    counts[key] = left
                else:
                    counts.pop(key, None)  # idle owners and groups leave no entry behind

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
