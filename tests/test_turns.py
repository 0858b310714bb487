"""Turns (explorer.turns): one holder at a time in arrival order, each waiting caller told its place."""

from __future__ import annotations

import threading
import time

import pytest

from explorer.turns import Turns


def wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_callers_take_turns_in_arrival_order_and_hear_their_place():
    turns, order, heard = Turns(poll=0.01), [], {"b": [], "c": []}
    turns.take()
    workers = {}
    for name in ("b", "c"):
        def work(name: str = name) -> None:
            with turns.turn(waiting=heard[name].append):
                order.append(name)
                if name == "b":  # hold the turn until c has heard that it is next
                    wait_until(lambda: heard["c"][-1:] == [1])
        workers[name] = threading.Thread(target=work)
        workers[name].start()
        wait_until(lambda name=name: heard[name])
    assert heard == {"b": [1], "c": [2]}
    turns.give()
    for worker in workers.values():
        worker.join(10)
    assert order == ["b", "c"] and heard["c"] == [2, 1]


def test_the_holder_may_take_its_turn_again_and_only_it_gives_it_back():
    turns = Turns()
    with turns.turn(), turns.turn():  # re-entrant for the holding thread
        failed = []
        thread = threading.Thread(target=lambda: failed.append(pytest.raises(RuntimeError, turns.give)))
        thread.start()
        thread.join(10)
        assert failed  # another thread cannot give back what it does not hold
    assert turns.take(should_stop=lambda: True)  # free now: taken at once, should_stop not even asked
    turns.give()


def test_a_waiting_caller_can_stop_and_leaves_the_line():
    turns, stop = Turns(poll=0.01), threading.Event()
    who, result = object(), []
    turns.take()
    thread = threading.Thread(target=lambda: result.append(turns.take(who, should_stop=stop.is_set)))
    thread.start()
    wait_until(lambda: turns.place(who) == 1)
    stop.set()
    thread.join(10)
    assert result == [False] and turns.place(who) is None
    turns.give()
