"""The soak's memory verdict on made-up RSS samples: a spike is not a leak, a rising floor is."""

from __future__ import annotations

import math
import time

from soak import WINDOW, Deadline, SoakResult

MB = 1 << 20


def _result(samples: list[tuple[float, int]], toured: dict[int, float]) -> SoakResult:
    return SoakResult(rss=[(t, mb * MB) for t, mb in samples], toured=toured)


def test_a_spike_at_the_end_is_not_growth() -> None:
    samples = [(t, 1400) for t in range(0, 200)] + [(200, 3900)]  # four sessions' attributions, for a moment
    assert _result(samples, {0: 100.0, 1: 90.0}).rss_growth() == 1.0


def test_a_rising_floor_is_growth() -> None:
    samples = [(t, 1000 + 2 * max(0, t - 100)) for t in range(0, 200)]  # +2 MB a second once warm
    growth = _result(samples, {0: 100.0}).rss_growth()
    assert growth == (1000 + 2 * (199 - WINDOW - 100)) / 1000  # the floors at 100 s and 179 s


def test_no_verdict_when_the_sessions_warm_too_late() -> None:
    samples = [(t, 1000) for t in range(0, 120)]
    assert math.isnan(_result(samples, {0: 100.0}).rss_growth())
    assert math.isnan(_result(samples, {}).rss_growth())


def test_the_deadline_waits_for_every_session_then_watches() -> None:
    def at(seconds_in: float, result: SoakResult) -> bool:
        return Deadline(time.monotonic() - seconds_in, seconds=120, watch=60, limit=300, sessions=2).passed(result)

    one = SoakResult(toured={0: 100.0})
    assert not at(250, one)  # session 1 has not toured yet
    assert at(301, one)  # the limit
    both = SoakResult(toured={0: 100.0, 1: 110.0})
    assert not at(165, both) and at(171, both)  # a minute after the last warmed up
    early = SoakResult(toured={0: 30.0}, broken={1})
    assert not at(100, early) and at(121, early)  # never before `seconds`; a broken session counts as done
