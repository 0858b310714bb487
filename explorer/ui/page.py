"""The one shape of a page: ``guarded(main)`` runs it, and no error a user can cause becomes a traceback; its tabs
are :func:`lazy_tabs`; results it keeps across reruns are :func:`remembered`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

import streamlit as st

from explorer.errors import ExplorerError
from explorer.ui import keys
from explorer.ui.pages import Page

__all__ = ["guarded", "lazy_tabs", "recalled", "remembered", "show_error"]

T = TypeVar("T")

log = logging.getLogger("explorer")


def guarded(main: Callable[[], None]) -> None:
    """Run a page's ``main()``. An :class:`ExplorerError` (bad input, too expensive a setting) is shown as
    ``st.error`` with its sentence; anything else is logged with its traceback for the server's operator and
    shown as one short message, so the session goes on. Streamlit's own control flow (``st.stop``,
    ``st.rerun``, ``st.switch_page``) derives from ``BaseException`` and passes through untouched.

    With ``EXPLORER_RAISE=1`` (the tests set it) an unexpected error is raised instead, so AppTest sees it.
    """
    try:
        main()
    except ExplorerError as err:
        show_error(err, "page")
    except Exception as err:  # noqa: BLE001 - the last line of defence: a message, never a traceback
        if os.environ.get("EXPLORER_RAISE") == "1":
            raise
        log.exception("unexpected error on a page")
        st.error(f"Something went wrong on this page ({type(err).__name__}: {err}). The rest of the app still "
                 "works; change a setting or reload the page to try again.", icon=":material/error:")


def show_error(err: ExplorerError, where: str) -> None:
    """An error's sentence; when the server could not answer (busy, dead, late: a ``BackendError``), a "Try
    again" button too: nothing failed is remembered, so the rerun it starts asks again. ``where`` keys the
    button (one per place on a page)."""
    from explorer.backend import BackendError  # the backend package loads with its first use, not with the page

    st.error(str(err), icon=":material/error:")
    if isinstance(err, BackendError):
        st.button("Try again", key=f"{keys.RETRY}_{where}", icon=":material/refresh:")


def lazy_tabs(page: Page, sections: Mapping[str, Callable[[], None]], *, first: bool = True) -> None:
    """``page``'s tabs (its registry labels, in order; ``sections`` maps each tab id to what it draws), the open one
    tracked under ``page.tab_key`` (in the link). The open tab is drawn (and the first one too, with ``first``),
    the others not at all, so a change of model or layer redraws only what is on screen; opening another tab costs
    one rerun. Controls on a tab that is not drawn keep their values (``url_state.keep``)."""
    if set(sections) != set(page.tabs) or page.tab_key is None:
        raise ValueError(f"{page.title} declares the tabs {list(page.tabs)}, not {list(sections)}")
    tabs = st.tabs(list(page.tabs.values()), key=page.tab_key, on_change="rerun")
    for i, (tab, tab_id) in enumerate(zip(tabs, page.tabs, strict=True)):
        if tab.open or (first and i == 0):
            with tab:
                sections[tab_id]()


def remembered(name: str, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()`` once per ``key``, kept in this session under ``name`` across reruns (one entry per name: a
    new key replaces the old result)."""
    memo = st.session_state.get(name)
    if memo is not None and memo[0] == key:
        return memo[1]
    value = compute()
    st.session_state[name] = (key, value)
    return value


def recalled(name: str, key: Hashable) -> Any:
    """What :func:`remembered` keeps under ``name`` for ``key``, or ``None``."""
    memo = st.session_state.get(name)
    return memo[1] if memo is not None and memo[0] == key else None
