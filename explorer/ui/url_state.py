"""Links to an exact view: the URL's query <-> ``st.session_state``, for the keys declared in ``url_params``.

app.py calls :func:`restore` before the sidebar and the page (a link's values become the widgets' values),
:func:`notice` (one warning naming what a link could not use), and after the page :func:`keep` and
:func:`link_box` (a fragment that publishes the current values to ``st.query_params``, defaults left out, and
fills the "Copy link" box). A control inside a page's own ``st.fragment`` passes
``on_change=relink(<fragment key>)``.

When a query is read (pinned by ``tests/test_url_state.py``):

* **a link opened** (the session's first run): the URL wins; what it cannot use is named in one notice;
* **back/forward** (a rerun Streamlit marks ``is_history_navigation``): the URL wins, a missing value means its
  default;
* **every other rerun**: the session's state wins and the URL is only written. The browser sends its address bar
  with every rerun, and may send it before it shows the query the last run published, so reading it would undo
  the user's last edit;
* a value equal to its default is left out of a link, and a missing value means the default, so a link made on
  any page, in any session, opens the same view. Applying a link sets every sidebar key it lacks to its default
  (a widget whose key is deleted falls back to its own minimum).

``st.query_params`` is written from app.py rather than bound to each widget (``bind="query-params"``): a binding
cannot check a value against the model the link names (a stage of resnet34, a block of that stage), and drops
defaults a page works out at run time (streamlit#16055).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import streamlit as st
from streamlit.errors import StreamlitAPIException
from streamlit.runtime.scriptrunner import get_script_run_ctx

from explorer.text import md
from explorer.ui import keys
from explorer.ui.links import encode_value, view_link
from explorer.ui.url_params import ALL, PAGE, PARAMS, Context, Ignored, page_params

__all__ = ["EMBED", "current_state", "decode", "encode", "link", "link_box", "notice", "publish", "relink",
           "restore"]

EMBED = ("embed", "embed_options")  # Streamlit's own parameters: kept, never read as a setting
UPLOAD_NOTE = "An uploaded image cannot travel in a link: the link opens with the sample photograph."


def _text(value: Any) -> str:
    return "the page's own choice" if value is PAGE else encode_value(value)


def decode(query: Mapping[str, str], page: str) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """A link's query -> (valid values by key, ignored ``(key, text, reason)``); a missing key is left out
    (it means its default). Never raises: what cannot be used is listed, with the default it falls back to."""
    values: dict[str, Any] = {}
    ignored: list[tuple[str, str, str]] = []
    mine = {p.key for p in page_params(page)}
    for key, text in query.items():
        if key in EMBED or key in mine:
            continue
        ignored.append((key, text, "not a setting of this page" if key in PARAMS else "not a setting of this app"))
    for param in page_params(page):
        if param.key not in query:
            continue
        ctx = Context(values)
        try:
            values[param.key] = param.parse(query[param.key], ctx)
        except Ignored as why:
            ignored.append((param.key, query[param.key], f"{why}; using {_text(param.default_for(ctx))}"))
    return values, ignored


def encode(state: Mapping[str, Any], page: str) -> dict[str, str]:
    """Current values -> a link's query: the page's and the sidebar's keys, defaults left out (None too)."""
    ctx = Context({k: v for k, v in state.items() if k in PARAMS})
    query = {}
    for param in page_params(page):
        value = state.get(param.key)
        if value is None or (not isinstance(value, (str, int, float, bool, list, tuple))):
            continue
        default = param.default_for(ctx)
        if default is not PAGE and encode_value(value) == encode_value(default):
            continue
        query[param.key] = encode_value(value)
    return query


def _canonical(query: Mapping[str, str]) -> str:
    return urlencode(sorted((k, v) for k, v in query.items() if k not in EMBED))


def _query() -> dict[str, str]:
    return {key: st.query_params[key] for key in st.query_params}  # the last value of a repeated key


def history_navigation() -> bool:
    """Whether this rerun is the browser's back/forward (Streamlit >= 1.67 marks it on the run's context)."""
    return bool(getattr(get_script_run_ctx(), "is_history_navigation", False))


def restore(page: str) -> None:
    """Apply the URL's query to ``st.session_state`` on a link's first run and on back/forward, never otherwise
    (see the module docstring): valid values are written, a sidebar key the link lacks is set to its default, a
    page key it lacks is removed (the page starts at its default), and what was ignored is kept for :func:`notice`."""
    s = st.session_state
    query = _query()
    first = keys.PRIVATE_URL_APPLIED not in s
    s[keys.PRIVATE_URL_PAGE] = page
    if not (first or history_navigation()):
        return
    text = _canonical(query)
    s[keys.PRIVATE_URL_APPLIED] = text
    if first and not text:
        return
    values, ignored = decode(query, page)
    if query.get(keys.WEIGHTS) == "checkpoint" and s.get(keys.CHECKPOINT):  # this session's own upload: keep it
        values[keys.WEIGHTS] = "checkpoint"
        ignored = [item for item in ignored if item[0] != keys.WEIGHTS]
    ctx = Context(values)
    for param in page_params(page):
        default = param.default_for(ctx)
        if param.key in values:
            s[param.key] = values[param.key]
        elif ALL in param.pages and default is not PAGE and default is not None:
            s[param.key] = default  # set, not deleted: a widget without its key falls back to its own minimum
        elif param.key in s:
            del s[param.key]
    s[keys.PRIVATE_URL_IGNORED] = ignored


def keep(page: str) -> None:
    """After the page: keep the value of each of its controls that this run did not draw (on a tab that is not
    open, or shown only for some settings). Streamlit drops the state of a widget a run does not draw, and the
    control would come back at its default; a value written back through ``st.session_state`` stays (Streamlit's
    documented way). A control drawn in this run cannot be written to, and needs nothing. The page checks a kept
    value against the model in use before drawing it, as it checks a link's."""
    s = st.session_state
    for param in page_params(page):
        if ALL not in param.pages and param.key in s:
            try:
                s[param.key] = s[param.key]
            except StreamlitAPIException:  # drawn in this run: Streamlit keeps it
                pass


def notice() -> None:
    """One short warning naming what the link just applied could not use, e.g. ``ignored arch=resnet999: not an
    architecture (...); using resnet50``. Shown once."""
    ignored = st.session_state.pop(keys.PRIVATE_URL_IGNORED, None)
    if ignored:
        items = "; ".join(f"{md(f'{key}={value}', 60)}: {reason}" for key, value, reason in ignored[:6])
        more = f" (and {len(ignored) - 6} more)" if len(ignored) > 6 else ""
        st.warning(f"This link had settings the app could not use, so they were ignored — {items}{more}.",
                   icon=":material/link_off:")


def current_state() -> dict[str, Any]:
    """The session's values of every declared key that is set."""
    return {key: st.session_state[key] for key in PARAMS if key in st.session_state}


def link(page: str, query: Mapping[str, str]) -> str:
    """The full link (``st.context.url``'s app root + the page + the query), or a relative one without it."""
    relative = view_link(page, query)
    url = st.context.url
    if not url:
        return relative
    root = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if page and root.endswith("/" + page):
        root = root[: -len(page) - 1]
    return f"{root}/{relative}"


def publish(page: str, box: Any | None = None) -> str:
    """Write the current view to ``st.query_params`` (only when it changed) and, into ``box`` (a placeholder),
    the "Copy link to this view" text; returns the link."""
    query = encode(current_state(), page)
    text = _canonical(query)
    if text != _canonical(_query()):
        embed = {key: st.query_params.get_all(key) for key in EMBED if key in st.query_params}
        st.query_params.from_dict({**query, **embed})
    st.session_state[keys.PRIVATE_URL_APPLIED] = text
    st.session_state[keys.PRIVATE_URL_PAGE] = page
    full = link(page, query)
    if box is not None:
        with box.container():
            st.markdown("**Copy link to this view**")
            st.code(full, language=None, wrap_lines=True)
            st.caption(UPLOAD_NOTE)
    return full


@st.fragment(key=keys.FRAGMENT_LINK)
def _link_fragment(page: str) -> None:
    publish(page, st.empty())


def link_box(page: str) -> None:
    """Publish the view and draw the "Copy link to this view" box, as a fragment: app.py calls it after the page
    (inside the sidebar's place for it); a linked control inside a page's own fragment reruns it through
    :func:`relink`, so the link never lags behind the screen."""
    _link_fragment(page)


def relink(fragment: str) -> Callable[[], None]:
    """``on_change`` for a control that belongs in the link and lives in the page's fragment keyed ``fragment``:
    its change in that fragment's own run reruns the fragment and the link box (``st.rerun`` with fragment keys),
    not the whole page.

    Only in a fragment run: a full run redraws the link box anyway, and turning a full run into a fragment run
    sends the browser deltas for a fragment it may no longer show (it has moved to another page), which blanks
    the page."""

    def rerun() -> None:
        ctx = get_script_run_ctx()
        in_fragment_run = ctx is not None and bool(ctx.fragment_ids_this_run)
        if in_fragment_run and keys.PRIVATE_URL_PAGE in st.session_state:  # restore() ran: app.py draws the box
            st.rerun([fragment, keys.FRAGMENT_LINK])
        # a full run, or a page run on its own (no link box): the interaction's own rerun stands

    return rerun
