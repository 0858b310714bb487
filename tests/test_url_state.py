"""Links to an exact view: every page's state survives encode -> decode; bad links give a notice and defaults;
Streamlit's query-parameter pitfalls (defaults dropped, page switch, back/forward) are pinned with AppTest."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from explorer import attribution as attr
from explorer.config import ModelConfig
from explorer.ui import keys, pages, url_state
from explorer.ui.url_params import PAGE, PARAMS, Context, page_params
from explorer.ui.url_state import decode, encode

DEFAULTS = {f.key: getattr(ModelConfig(), f.key) for f in ModelConfig.FIELDS}
STATES: dict[str, dict[str, object]] = {
    "": {keys.ARCH: "resnet34", keys.VARIANT: "v1", keys.SHORTCUT: "A", keys.PLAIN: True, keys.INPUT_SIZE: 160,
         keys.WEIGHTS: "random", keys.PRESENT: True},
    "architecture": {keys.ARCH: "resnet34", keys.LAYER_DEPTH: 3, keys.COMPARE_ARCH: "resnet101",
                     keys.ARCH_TAB: "Compare"},
    "blocks": {keys.ARCH: "resnet34", keys.BLOCK_STAGE: "layer3", keys.BLOCK_INDEX: 4, keys.BLOCK_TAB: "Run a tensor"},
    "feature_maps": {keys.ARCH: "resnet34", keys.FM_STAGE: "layer3", keys.FM_BLOCK: 2,
                     keys.FM_RANK: "top by max activation", keys.FM_K: 8, keys.FM_SCALE: "per channel",
                     keys.FM_OPACITY: 0.35, keys.FM_OVERLAY_CHANNEL: 17, keys.FM_TAB: "Overlay",
                     keys.SAMPLE: "coffee cup"},
    "attributions": {keys.INPUT_SIZE: 160, keys.METHODS: ["integrated_gradients", "occlusion", "grad_cam"],
                     "ig_steps": 64, "ig_baseline": "blur", "occ_window": 24, "occ_stride": 8, "gc_layer": "layer3.1",
                     keys.TARGET_CLASS: 281, keys.ATTR_VIEW: "positive", keys.COLORMAP: "Magma", keys.OPACITY: 0.4,
                     keys.SANITY_METHOD: "smoothgrad", keys.SANITY_FROM: "layer3", keys.SAMPLE: "rocket launch",
                     keys.ATTR_TAB: "Sanity check"},
    "lab": {keys.LAB_FAMILY: pages.LAB_IMAGENET, keys.LAB_DEPTH: 56, keys.LAB_ARCH: "resnet34", keys.LAB_SEED: 7,
            keys.LAB_PRESET: pages.LAB_PAIR, keys.LAB_PAIR_DEPTH: 14},
    "lesson": {keys.ARCH: "resnet18", keys.LESSON_STEP: 5},
}


@pytest.mark.parametrize("page", list(STATES))
def test_round_trip_of_every_page(page: str) -> None:
    state = STATES[page]
    query = encode(state, page)
    assert set(query) == set(state)  # every value differs from its default, so every one travels
    values, ignored = decode(query, page)
    assert ignored == []
    assert values == state


def test_defaults_are_left_out_and_a_missing_key_means_its_default() -> None:
    assert encode(dict(DEFAULTS), "") == {}
    assert encode({**DEFAULTS, keys.ARCH: "resnet18"}, "feature_maps") == {keys.ARCH: "resnet18"}
    assert decode({}, "feature_maps") == ({}, [])


def test_every_page_declares_its_main_controls() -> None:
    assert all(hasattr(keys, name) for name in ("PRESENT", "SAMPLE"))
    assert {p.key for p in page_params("")} == {keys.ARCH, keys.VARIANT, keys.SHORTCUT, keys.PLAIN, keys.STEM,
                                                keys.PREACT, keys.SE_RATIO, keys.INPUT_SIZE, keys.WEIGHTS,
                                                keys.PRESENT}
    option_keys = {keys.method_option(s.short, o.short) for s in attr.METHODS.values() for o in s.options}
    assert option_keys <= set(PARAMS)
    assert PARAMS[keys.FM_STAGE].default is PAGE  # the page works it out: always in a link


def test_the_links_read_the_page_registry() -> None:
    """Tabs, rankings, views, methods and races come from ``explorer.ui.pages``: a renamed one changes the links
    with it, never leaves them falling back in silence."""
    ctx = Context()
    for page in pages.PAGES:
        assert page is pages.by_url(page.url)
        if page.tabs:
            param = PARAMS[page.tab_key]
            assert param.pages == (page.url,) and list(param.choices(ctx)) == list(page.tabs.values())
    assert list(PARAMS[keys.FM_RANK].choices(ctx)) == list(pages.FM_RANK)
    assert list(PARAMS[keys.ATTR_VIEW].choices(ctx)) == list(pages.ATTR_VIEWS)
    assert PARAMS[keys.METHODS].default == list(pages.ATTR_DEFAULT_METHODS) and PARAMS[keys.METHODS].most() == 4
    assert PARAMS[keys.TARGET_CLASS].default == pages.ATTR_TOP
    assert list(PARAMS[keys.LAB_FAMILY].choices(ctx)) == list(pages.LAB_FAMILIES)
    assert list(PARAMS[keys.LAB_PRESET].choices(ctx)) == list(pages.LAB_RACES)
    assert [PARAMS[f.key].kind for f in ModelConfig.FIELDS] == [f.kind for f in ModelConfig.FIELDS]


@pytest.mark.parametrize(("page", "key", "text"), [
    ("", keys.ARCH, "resnet999"), ("", keys.INPUT_SIZE, "5000"), ("", keys.INPUT_SIZE, "16"),
    ("", keys.INPUT_SIZE, "abc"), ("", keys.PLAIN, "maybe"), ("", keys.WEIGHTS, "checkpoint"),
    ("", keys.VARIANT, "v2"), ("attributions", keys.METHODS, "foo"), ("attributions", keys.METHODS, "saliency,foo"),
    ("attributions", keys.METHODS, "saliency,smoothgrad,occlusion,grad_cam,deeplift"),
    ("attributions", keys.OPACITY, "2"), ("attributions", keys.OPACITY, "nan"), ("attributions", "ig_steps", "1"),
    ("attributions", "gc_layer", "layer9"), ("attributions", keys.TARGET_CLASS, "5000"),
    ("attributions", keys.COLORMAP, "jet"), ("feature_maps", keys.FM_STAGE, "layer9"),
    ("feature_maps", keys.FM_BLOCK, "99"), ("feature_maps", keys.FM_K, "0"), ("feature_maps", keys.SAMPLE, "x"),
    ("blocks", keys.BLOCK_INDEX, "-1"), ("blocks", keys.BLOCK_TAB, "No such tab"), ("lab", keys.LAB_SEED, "1e9"),
    ("lesson", keys.LESSON_STEP, "15"),
])
def test_bad_values_are_ignored_with_a_reason(page: str, key: str, text: str) -> None:
    values, ignored = decode({keys.ARCH: "resnet18", key: text}, page)
    assert key not in values
    assert [(k, t) for k, t, _ in ignored] == [(key, text)]
    assert "using" in ignored[0][2]


def test_unknown_and_other_pages_keys_are_ignored_embed_is_not() -> None:
    values, ignored = decode({"zzz": "1", keys.FM_STAGE: "layer3", "embed": "true"}, "")
    assert values == {}
    assert {k: reason for k, _, reason in ignored} == {"zzz": "not a setting of this app",
                                                       keys.FM_STAGE: "not a setting of this page"}


def test_a_block_is_checked_against_the_stage_and_model_the_link_names() -> None:
    assert decode({keys.ARCH: "resnet34", keys.FM_STAGE: "layer3", keys.FM_BLOCK: "5"}, "feature_maps")[1] == []
    _, ignored = decode({keys.ARCH: "resnet18", keys.FM_STAGE: "layer3", keys.FM_BLOCK: "5"}, "feature_maps")
    assert [k for k, _, _ in ignored] == [keys.FM_BLOCK]  # resnet18's layer3 has 2 blocks


# --------------------------------------------------------------------------------------------- AppTest


def _model(app: AppTest) -> str:
    return {m.label: m.value for m in app.metric}["Model"]


def test_a_link_opens_its_view_and_the_url_keeps_it(app: AppTest) -> None:
    app.query_params[keys.ARCH] = "resnet34"
    app.query_params[keys.SHORTCUT] = "B"  # its default: dropped from the URL, the view is the same
    app.run()
    assert not app.exception and not app.warning
    assert _model(app) == "resnet34"
    assert app.query_params == {keys.ARCH: "resnet34"}
    link = app.sidebar.code[0].value
    assert link.endswith("?arch=resnet34")


def test_a_bad_link_gives_one_notice_and_the_defaults(app: AppTest) -> None:
    app.query_params.update({keys.ARCH: "resnet999", keys.INPUT_SIZE: "5000", keys.METHODS: "foo", "zzz": "1",
                             keys.WEIGHTS: "checkpoint"})
    app.run()
    assert not app.exception
    assert len(app.warning) == 1
    text = app.warning[0].value
    assert "arch=resnet999" in text and "not an architecture" in text and "using resnet50" in text
    assert "input_size=5000" in text and "zzz=1" in text and "checkpoint cannot travel" in text
    assert _model(app) == "resnet50"
    assert app.session_state[keys.INPUT_SIZE] == 224
    app.run()  # the notice is shown once
    assert not app.warning


def test_a_widget_change_is_not_undone_by_the_old_url(app: AppTest) -> None:
    app.query_params[keys.ARCH] = "resnet34"
    app.run()
    app.session_state[keys.ARCH] = "resnet18"  # what the sidebar widget writes; the browser still sends arch=resnet34
    app.run()
    assert _model(app) == "resnet18"
    assert app.query_params == {keys.ARCH: "resnet18"}


def _history(monkeypatch: pytest.MonkeyPatch, on: bool = True) -> None:
    """Make the next runs back/forward reruns, as Streamlit marks a popstate (``ctx.is_history_navigation``)."""
    monkeypatch.setattr(url_state, "history_navigation", lambda: on)


def test_back_and_forward_apply_the_history_entry(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    app.query_params[keys.ARCH] = "resnet34"
    app.run()
    app.session_state[keys.ARCH] = "resnet18"
    app.run()
    app.query_params.clear()
    app.query_params[keys.ARCH] = "resnet34"  # back: the browser sends the earlier entry's query
    _history(monkeypatch)
    app.run()
    assert _model(app) == "resnet34"


def test_a_stale_query_does_not_undo_an_edit(app: AppTest) -> None:
    """The browser sends its address bar with every rerun; a click that lands before it shows the newest query
    sends an older one. Only back/forward reads it: the edits stand, the current view is published again."""
    app.query_params.update({keys.ARCH: "resnet34", keys.INPUT_SIZE: "160"})
    app.run()
    app.session_state[keys.ARCH] = "resnet18"
    app.session_state[keys.INPUT_SIZE] = 96
    app.run()
    app.query_params.clear()
    app.query_params[keys.ARCH] = "resnet34"  # an older view's query, without the input size
    app.run()
    assert not app.exception and not app.warning
    assert _model(app) == "resnet18" and app.session_state[keys.INPUT_SIZE] == 96
    assert app.query_params == {keys.ARCH: "resnet18", keys.INPUT_SIZE: "96"}


def test_back_to_an_entry_without_the_size_gives_the_default_size_not_the_minimum(
        app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    app.query_params[keys.INPUT_SIZE] = "96"
    app.run()
    app.query_params.clear()
    app.query_params[keys.ARCH] = "resnet18"  # a history entry that lacks input_size: its default, 224
    _history(monkeypatch)
    app.run()
    assert not app.exception
    assert app.session_state[keys.INPUT_SIZE] == 224
    assert app.sidebar.number_input(key=keys.INPUT_SIZE).value == 224


def test_a_page_switch_clears_the_url_but_keeps_the_model(app: AppTest) -> None:
    app.query_params[keys.ARCH] = "resnet34"
    app.query_params[keys.PLAIN] = "1"
    app.run()
    app.query_params.clear()  # Streamlit clears the query on a page switch
    app.switch_page("views/architecture.py")
    app.run()
    assert not app.exception
    assert app.session_state[keys.ARCH] == "resnet34" and app.session_state[keys.PLAIN] is True
    assert app.query_params[keys.ARCH] == "resnet34"  # published again for the new page


def test_back_to_the_empty_entry_is_the_default_view(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    app.query_params[keys.ARCH] = "resnet34"
    app.run()
    app.query_params.clear()  # a rerun whose address bar is empty: not a navigation, the view stands
    app.run()
    assert _model(app) == "resnet34"
    app.query_params.clear()  # back to the entry before the link, on the same page
    _history(monkeypatch)
    app.run()
    assert _model(app) == "resnet50"


def test_present_mode_from_the_url(app: AppTest) -> None:
    app.query_params[keys.PRESENT] = "1"
    app.run()
    assert not app.exception
    assert app.session_state[keys.PRESENT] is True
    assert app.query_params[keys.PRESENT] == "1"


def test_projector_template_is_large_and_per_figure() -> None:
    import plotly.graph_objects as go
    import plotly.io as pio

    from explorer.plots import theme

    before = pio.templates.default
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    big = theme.styled(fig)
    assert big.layout.template.layout.xaxis.tickfont.size == theme.TICK_SIZE >= 20
    projector = pio.templates[theme.PROJECTOR].layout
    assert big.layout.template.layout.colorscale.sequential == projector.colorscale.sequential
    assert fig.layout.template.layout.xaxis.tickfont.size is None  # the original is untouched
    assert pio.templates.default == before  # never process-global


def test_a_blocks_link_opens_that_block_and_tab(app: AppTest) -> None:
    app.query_params.update({keys.ARCH: "resnet18", keys.BLOCK_STAGE: "layer2", keys.BLOCK_INDEX: "1",
                             keys.BLOCK_TAB: "Output size"})
    app.switch_page("views/blocks.py").run()
    assert not app.exception and not app.warning
    assert app.selectbox(key=keys.BLOCK_STAGE).value == "layer2"
    assert app.selectbox(key=keys.BLOCK_INDEX).value == 1
    assert app.session_state[keys.BLOCK_TAB] == "Output size"
    assert app.query_params[keys.BLOCK_STAGE] == "layer2" and app.query_params[keys.BLOCK_TAB] == "Output size"


def test_an_attributions_link_sets_methods_and_their_options(app: AppTest) -> None:
    app.query_params.update({keys.ARCH: "resnet18", keys.INPUT_SIZE: "64", keys.METHODS: "saliency,grad_cam",
                             "gc_layer": "layer3", keys.COLORMAP: "Magma", keys.OPACITY: "0.4"})
    app.switch_page("views/attributions.py").run()
    assert not app.exception
    assert not [w for w in app.warning if "link" in w.value]  # the page's own weights notices only
    assert app.multiselect(key=keys.METHODS).value == ["saliency", "grad_cam"]
    assert app.selectbox(key="gc_layer").value == "layer3"
    # the display widgets are drawn with the results (after Run); the link's values wait for them
    assert app.session_state[keys.COLORMAP] == "Magma" and app.session_state[keys.OPACITY] == 0.4
    assert app.query_params[keys.COLORMAP] == "Magma" and app.query_params[keys.OPACITY] == "0.4"
    assert app.query_params[keys.METHODS] == "saliency,grad_cam" and app.query_params["gc_layer"] == "layer3"
    app.button(key=keys.RUN_ATTR).click().run()
    assert not app.exception
    assert app.selectbox(key=keys.COLORMAP).value == "Magma" and app.slider(key=keys.OPACITY).value == 0.4


@pytest.mark.parametrize("fragment_ids, reruns",
                         [(None, []), ([], []), (["frag-id"], [["frag_x", keys.FRAGMENT_LINK]])])
def test_a_linked_control_reruns_its_fragment_only_in_that_fragments_run(
        monkeypatch: pytest.MonkeyPatch, fragment_ids: list[str] | None, reruns: list) -> None:
    """A linked control's change in its fragment's run reruns the fragment and the link box; in a full run it
    changes nothing (the full run redraws the link). Turning a full run into a fragment run blanked a student's
    page in the classroom soak when the browser had already moved to another page (see ``url_state.relink``)."""
    from types import SimpleNamespace

    asked: list = []
    monkeypatch.setattr(url_state, "get_script_run_ctx", lambda: SimpleNamespace(fragment_ids_this_run=fragment_ids))
    monkeypatch.setattr(url_state.st, "rerun", lambda scope: asked.append(scope))
    monkeypatch.setattr(url_state.st, "session_state", {keys.PRIVATE_URL_PAGE: "feature_maps"})
    url_state.relink("frag_x")()
    assert asked == reruns
