"""The one shape of a page: ``guarded(main)`` runs it, and no error a user can cause becomes a traceback."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import streamlit as st

from explorer.errors import ExplorerError
from explorer.ui import keys

__all__ = ["guarded", "lazy_tabs", "show_error"]

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


def lazy_tabs(sections: dict[str, Callable[[], None]], key: str, *, first: bool = True) -> None:
    """Tabs (labelled by ``sections``' keys) whose state is tracked (``key``, in the link): the open tab is drawn
    (and the first one too, with ``first``), the others not at all, so a change of model or layer redraws only
    what is on screen. Opening another tab costs one rerun. Controls on a tab that is not drawn keep their values
    (``url_state.keep``)."""
    tabs = st.tabs(list(sections), key=key, on_change="rerun")
    for i, (tab, section) in enumerate(zip(tabs, sections.values(), strict=True)):
        if tab.open or (first and i == 0):
            with tab:
                section()
