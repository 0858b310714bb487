"""Hostile input from a class (issue 23): user text that stays text. Every payload of the corpus goes through the
one helper each sink uses (:mod:`explorer.text`) and through the app's own messages and widgets that show file
names, class names and a link's keys and values; none comes out rendered."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
import torch
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from explorer import text
from explorer.models import build
from explorer.plots import attribution as attribution_plots
from explorer.predict import Prediction
from explorer.shared import seeded
from explorer.weights import ClassNamesError, WeightsError, model_from_checkpoint

PAYLOADS = (
    "**[Session expired - sign in](https://evil.example)**",
    "<a href='https://evil.example'>click</a>",
    "<span style='color:red;font-size:90px'>red</span>",
    ":red[coloured] :material/home: :smile:",
    "$x^2$ and $$\\int$$",
    "# a heading",
    "![img](https://evil.example/x.png)",
    "`code` ``double`` ~~strike~~ _it_ *it*",
    "line one\nline two\r\n- a list item",
    "https://evil.example www.evil.example user@evil.example",
    "<img src=x onerror=alert(1)>",
    "[x]: https://evil.example\n[x]",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "&lt;b&gt;entity&lt;/b&gt;",
    "\\*escaped\\* and a trailing backslash \\",
    "`",
)
_MD = MarkdownIt("gfm-like", {"html": True, "linkify": True})  # CommonMark + GFM tables, autolinks and raw HTML


def _rendered_outside_code(markdown: str) -> str:
    """The HTML markdown makes of ``markdown``, with every code span taken out: what is left was rendered."""
    return re.sub(r"<code>.*?</code>", "", _MD.renderInline(markdown), flags=re.S)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_md_shows_the_text_and_renders_nothing(payload: str) -> None:
    shown = text.md(payload)
    left = _rendered_outside_code(shown)
    assert left.strip() == "", f"rendered outside a code span: {left!r}"
    code = re.findall(r"<code>(.*?)</code>", _MD.renderInline(shown), flags=re.S)
    assert [html.unescape(c).strip() for c in code] == [text.one_line(payload).strip()]  # the text itself, one line


@pytest.mark.parametrize("payload", PAYLOADS)
def test_plotly_text_has_no_tags(payload: str) -> None:
    shown = text.plotly(payload)
    assert "<" not in shown and ">" not in shown and "\n" not in shown
    assert html.unescape(shown) == text.one_line(payload)


def test_long_text_is_cut() -> None:
    assert len(text.md("x" * 10_000)) < text.LIMIT + 10 and text.one_line("x" * 500, 20).endswith("…")


# ------------------------------------------------------------------------ the app's messages that carry user text


def _named(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name  # as Streamlit's UploadedFile carries the browser's file name
    return handle


def _checkpoint_bytes() -> bytes:
    with seeded(0):
        state = build("resnet18", num_classes=3).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("payload", PAYLOADS[:6])
def test_a_checkpoints_file_names_stay_text_in_its_report_and_errors(payload: str) -> None:
    data = _checkpoint_bytes()
    names = json.dumps(["a", "b", "c"]).encode()
    _, report = model_from_checkpoint(_named(data, f"{payload}.pth"), classes=(f"{payload}.json", names))
    for message in (report.message, report.headline):
        assert payload.split("\n")[0] not in _rendered_outside_code(message)
        assert "evil.example" not in _rendered_outside_code(message)
    with pytest.raises(ClassNamesError) as refused:
        model_from_checkpoint(data, classes=(f"{payload}.json", json.dumps(["a"]).encode()))
    assert "evil.example" not in _rendered_outside_code(str(refused.value))
    bad = {f"{payload}.weight": torch.zeros(3, 4)}
    buffer = io.BytesIO()
    torch.save(bad, buffer)
    with pytest.raises(WeightsError) as unknown:  # a file in no layout lists its tensor names
        model_from_checkpoint(buffer.getvalue())
    assert "evil.example" not in _rendered_outside_code(str(unknown.value))


def test_class_names_in_the_charts_are_plain_text() -> None:
    names = tuple(PAYLOADS[:5])
    pred = Prediction(indices=(0, 1, 2, 3, 4), names=names, probabilities=(0.3, 0.2, 0.2, 0.2, 0.1), device="cpu",
                      seconds=0.1, logits=torch.arange(5.0).numpy())
    fig = attribution_plots.top_k_bars(pred)
    labels = [str(label) for trace in fig.data for label in trace.y]
    assert labels and all("<" not in label for label in labels)
    knock = attribution_plots.knockout_bars(pred, pred)
    assert all("<" not in str(label) for trace in knock.data for label in trace.x)


def test_a_links_keys_and_values_stay_text_in_its_notice(app: AppTest) -> None:
    """``?**[Session expired - sign in](https://evil.example)**=1`` and a bad value of a real key."""
    at = app
    at.query_params[PAYLOADS[0]] = "1"
    at.query_params["arch"] = PAYLOADS[6]
    at.run()
    assert not at.exception
    notice = " ".join(w.value for w in at.warning if "This link had settings" in w.value)
    assert notice and "evil.example" not in _rendered_outside_code(notice)
    assert "Session expired" in notice  # still said, as text


def test_places_durations_and_mult_adds_read_as_words() -> None:
    assert [text.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
    assert [text.duration(s) for s in (0.4, 35, 89.4, 90, 600, 642)] == ["0 s", "35 s", "89 s", "1.5 min", "10 min",
                                                                           "10.7 min"]
    assert [text.giga(n) for n in (4.1e7, 3.24e9, 1.2404e12)] == ["0.041 G mult-adds", "3.2 G mult-adds",
                                                                  "1,240 G mult-adds"]
