"""User text stays text: what a user controls (a link's keys and values, file names, class names, a lab file's
fields) is shown through one of these, never pasted into markdown or plotly as it is.

* :func:`md` for Streamlit's markdown (``st.markdown``, captions, alerts, widget labels and options): the text
  becomes an inline code span, where markdown, HTML, links (autolinks too), colour directives, icons, emoji and
  maths are not interpreted;
* :func:`plotly` for plotly's text (titles, tick labels, hover, annotations), whose pseudo-HTML honours ``<a>``,
  ``<span style>`` and ``<br>``: the text's ``&``, ``<`` and ``>`` become entities.

Both replace control characters (line breaks included) by spaces and cut the text at ``limit`` characters.
"""

from __future__ import annotations

import html
import re

__all__ = ["LIMIT", "duration", "giga", "md", "one_line", "ordinal", "plotly"]

LIMIT = 120
"""The most characters of user text shown in one place (a class name, a file name, a link's value)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: object, limit: int = LIMIT) -> str:
    """``text`` as one line of at most ``limit`` characters (control characters become spaces; "…" marks a cut)."""
    flat = _CONTROL.sub(" ", str(text))
    return flat if len(flat) <= limit else flat[: max(0, limit - 1)] + "…"


def md(text: object, limit: int = LIMIT) -> str:
    """``text`` as an inline code span for Streamlit markdown: shown as typed, never rendered. The fence is one
    backtick longer than the longest run of backticks inside; a space pads text that starts or ends with one."""
    flat = one_line(text, limit)
    fence = "`" * (max((len(run) for run in re.findall("`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def plotly(text: object, limit: int = LIMIT) -> str:
    """``text`` for plotly's pseudo-HTML (a title, a tick label, a hover line): its tags shown, not applied."""
    return html.escape(one_line(text, limit), quote=False)


def ordinal(n: int) -> str:
    """A place in line in words: 1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def giga(mult_adds: float) -> str:
    """Mult-adds for the screen, in billions with as many digits as a small number needs: ``"0.041 G mult-adds"``,
    ``"3.2 G mult-adds"``, ``"1,240 G mult-adds"``."""
    value = mult_adds / 1e9
    return f"{value:,.0f} G mult-adds" if value >= 10 else f"{value:.2g} G mult-adds"


def duration(seconds: float) -> str:
    """A time for the screen: ``"35 s"`` under a minute and a half, else minutes to a tenth (``"10.7 min"``,
    ``"10 min"``)."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f}".removesuffix(".0") + " min"
