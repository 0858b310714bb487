"""AppTest of views/lesson.py: every step runs with its figure, Next/Previous, ?lesson_step=N, predict then
reveal, and the link to the full page in that state."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from explorer import lesson
from explorer.config import ModelConfig
from explorer.ui import pages

PAGE = "views/lesson.py"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def page(page_app) -> AppTest:
    """The page on its own, on resnet18 at 64 px with random weights (small and fast)."""
    return page_app(PAGE, small=True, timeout=300)


def _link(at: AppTest) -> str:
    (button,) = at.get("link_button")
    return button.proto.url


def _progress(at: AppTest) -> str:
    (bar,) = at.get("progress")
    return bar.proto.text


@pytest.mark.parametrize("number", range(1, 15))
def test_every_step_runs_with_its_figure_question_and_link(page: AppTest, number: int) -> None:
    page.session_state["lesson_step"] = number
    page.run()
    assert not page.exception, page.exception
    assert not page.error, [e.value for e in page.error]
    assert _progress(page) == f"Step {number} of 14"
    s = lesson.step(number)
    assert page.header[0].value == f"{number}. {s.title}"
    assert page.get("plotly_chart") or page.get("image"), "no live figure"
    q = lesson.question(number, ModelConfig("resnet18", input_size=64))
    (radio,) = page.radio
    assert radio.label == q.prompt and tuple(radio.options) == q.choices
    url = urlsplit(_link(page))
    link = pages.LESSON_LINKS[number]
    assert url.path == link.page.url
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["arch"] == "resnet18" and query["input_size"] == "64"
    assert all(k in query for k in link.state)


def test_step_5_shows_table_1_of_the_chosen_depth(page: AppTest) -> None:
    page.session_state["lesson_step"] = 5
    page.run()
    table = page.dataframe[0].value
    assert list(table["stage"])[:5] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x"]
    assert list(table["output_size"])[:5] == ["16x16", "16x16", "8x8", "4x4", "2x2"]


def test_next_and_previous_walk_the_steps(page: AppTest) -> None:
    page.session_state["lesson_step"] = 6
    page.run()
    page.button(key="lesson_next_top").click().run()
    assert page.session_state["lesson_step"] == 7 and _progress(page) == "Step 7 of 14"
    page.button(key="lesson_previous_bottom").click().run()
    page.button(key="lesson_previous_top").click().run()
    assert page.session_state["lesson_step"] == 5 and not page.exception


def test_first_and_last_steps_disable_the_way_out(page: AppTest) -> None:
    page.session_state["lesson_step"] = 14
    page.run()
    assert page.button(key="lesson_next_top").disabled and not page.button(key="lesson_previous_top").disabled
    page.session_state["lesson_step"] = 7
    page.run()
    page.session_state["lesson_step"] = 1
    page.run()
    assert page.button(key="lesson_previous_top").disabled


def test_url_sets_the_step_once_and_a_bad_one_is_a_notice(page: AppTest) -> None:
    page.query_params["lesson_step"] = "7"
    page.run()
    assert page.session_state["lesson_step"] == 7 and not page.exception
    page.button(key="lesson_next_top").click().run()
    assert page.session_state["lesson_step"] == 8  # the URL was read once: Next is not undone


@pytest.mark.parametrize(("text", "expected"), [("abc", 1), ("99", 14), ("0", 1)])
def test_bad_step_in_the_url_falls_back_with_a_warning(page: AppTest, text: str, expected: int) -> None:
    page.query_params["lesson_step"] = text
    page.run()
    assert not page.exception
    assert page.session_state["lesson_step"] == expected
    assert page.warning


def test_predict_then_reveal(page: AppTest) -> None:
    page.session_state["lesson_step"] = 3
    page.run()
    q = lesson.question(3, ModelConfig("resnet18", input_size=64))
    assert not page.success
    page.radio[0].set_value(q.answer).run()
    page.button(key="lesson_reveal_3").click().run()
    assert page.success and q.answer in page.success[0].value
    assert any(q.explanation[:40] in m.value for m in page.markdown)
    wrong = next(c for c in q.choices if c != q.answer)
    page.radio[0].set_value(wrong).run()
    assert any("Not quite" in i.value for i in page.info)


def test_through_the_app(app: AppTest) -> None:
    app.session_state["arch"] = "resnet18"
    app.session_state["input_size"] = 64
    app.session_state["lesson_step"] = 4
    app.run()
    app.switch_page("views/lesson.py").run()
    assert not app.exception, app.exception
    assert _progress(app) == "Step 4 of 14"
    assert app.get("plotly_chart")


@pytest.mark.parametrize(("text", "expected", "notices"), [("7", 7, 0), ("abc", 1, 1), ("99", 1, 1)])
def test_a_link_to_step_n_through_the_app(app: AppTest, text: str, expected: int, notices: int) -> None:
    """In the app the URL state applies (and checks) ?lesson_step before the page: one notice for a bad one."""
    app.query_params["lesson_step"] = text
    app.switch_page("views/lesson.py").run()
    assert not app.exception, app.exception
    assert app.session_state["lesson_step"] == expected and _progress(app) == f"Step {expected} of 14"
    assert len([w for w in app.warning if "lesson_step" in w.value]) == notices
