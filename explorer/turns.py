"""Taking turns in arrival order, with each waiting caller told its place in line: :class:`Turns`.

Used where one holder at a time does long work and the others should see where they stand: a model's work twin
(:func:`explorer.shared.exclusive_twin`: attributions and faithfulness curves in every session) and the lab's one
training slot (:mod:`explorer.lab.runner`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Heard", "Turns"]

Heard = Callable[[int], None]
"""Hears a waiting caller's place in line (1: next), each time it changes."""


class Turns:
    """One holder at a time, in arrival order. Re-entrant: the thread holding the turn may take it again."""

    def __init__(self, poll: float = 0.2) -> None:
        self._changed = threading.Condition()
        self._line: list[object] = []
        self._holder: int | None = None  # the holding thread's ident
        self._depth = 0
        self._poll = poll

    def take(self, who: object | None = None, *, waiting: Heard | None = None,
             should_stop: Callable[[], bool] | None = None) -> bool:
        """Wait for ``who``'s turn (a fresh token when None) and take it (True), or give up once ``should_stop()``
        (False); ``waiting`` hears the place in line whenever it changes."""
        me = threading.get_ident()
        who = object() if who is None else who
        with self._changed:
            if self._holder == me:
                self._depth += 1
                return True
            self._line.append(who)
            heard = None
            try:
                while self._holder is not None or self._line[0] is not who:
                    if should_stop is not None and should_stop():
                        return False
                    place = self._line.index(who) + 1
                    if waiting is not None and place != heard:
                        waiting(place)
                        heard = place
                    self._changed.wait(self._poll)
                self._holder, self._depth = me, 1
                return True
            finally:
                self._line.remove(who)
                self._changed.notify_all()

    def give(self) -> None:
        """Give back the turn the calling thread holds (once per :meth:`take`)."""
        with self._changed:
            if self._holder != threading.get_ident():
                raise RuntimeError("this thread does not hold the turn")
            self._depth -= 1
            if self._depth == 0:
                self._holder = None
                self._changed.notify_all()

    def place(self, who: object) -> int | None:
        """``who``'s place among those waiting (1: next), None when it is not waiting."""
        with self._changed:
            return self._line.index(who) + 1 if who in self._line else None

    @contextmanager
    def turn(self, waiting: Heard | None = None) -> Iterator[None]:
        """Hold the turn while the block runs (:meth:`take`, then :meth:`give`)."""
        self.take(waiting=waiting)
        try:
            yield
        finally:
            self.give()
