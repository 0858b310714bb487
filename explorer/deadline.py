"""The time budget of a heavy call: a call that runs past its deadline is stopped before its next batch, its
partial work dropped and the shared model's lock released, so that one student's most expensive settings hold up
the other sessions on that model for at most :func:`call_seconds`.

* :func:`call_seconds`: ``EXPLORER_CALL_SECONDS``, by default 120 s (a Run of the default methods takes about 7 s
  on this 2-core CPU: ``bench/bench_browser.py``);
* :func:`watch`: a forward pre-hook on the running net (every batch a method sends is one forward of it) that
  raises :class:`DeadlineError` once the deadline has passed.

A user's Stop (or a new click) works the same way on a page: the progress bar's next update raises Streamlit's
own stop, between two batches.
"""

from __future__ import annotations

import time

from torch import nn

from explorer.errors import ExplorerError
from explorer.settings import positive_number
from explorer.shared import Hooks

__all__ = ["CALL_SECONDS", "DeadlineError", "call_seconds", "watch"]

CALL_SECONDS = 120.0


class DeadlineError(ExplorerError):
    """A heavy call ran past its deadline and was stopped; nothing of it was kept."""


def call_seconds() -> float:
    """The longest one heavy call may run: ``EXPLORER_CALL_SECONDS``, else :data:`CALL_SECONDS`."""
    return positive_number("EXPLORER_CALL_SECONDS", CALL_SECONDS)


def watch(hooks: Hooks, what: str, seconds: float | None = None, advice: str = "Lower its settings") -> None:
    """Stop ``hooks.net``'s next forward once ``seconds`` (default :func:`call_seconds`) have passed from now.
    ``what`` names the work and ``advice`` what to lower, in the message.

    Raises (from the hook, inside the call):
        DeadlineError: "Integrated Gradients ran past the 120 s one call may take on this server, ...".
    """
    limit = call_seconds() if seconds is None else float(seconds)
    deadline = time.monotonic() + limit

    def check(_module: nn.Module, _args: tuple) -> None:
        if time.monotonic() > deadline:
            raise DeadlineError(
                f"{what} ran past the {limit:g} s one call may take on this server, so it was stopped and its "
                f"partial work dropped. {advice} or choose a smaller network, then try again.")

    assert hooks.net is not None, "watch() needs the net that runs (exclusive() gives it)"
    hooks.pre(hooks.net, check)
