"""AppTest: the feature-maps page — sample, upload, camera, bad uploads, layer choice, the cost warning."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest
from test_images import png_claiming  # the awkward-file corpus lives with the image tests

from explorer.activations import BlockStream, channel_stats, upsample
from explorer.plots import features as plots

ROOT = Path(__file__).resolve().parents[1]
PAGE = "views/feature_maps.py"


def jpeg(width: int = 80, height: int = 60) -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def fm(page_app) -> AppTest:
    """The feature-maps page on its own with resnet18, random weights, 64 px input (quick on a CPU); caches
    cleared before and after."""
    at = page_app(PAGE, small=True).run()
    assert not at.exception, at.exception
    return at


def test_page_opens_from_the_app_navigation(app: AppTest) -> None:
    app.session_state["arch"] = "resnet18"
    app.session_state["weights"] = "random"
    app.session_state["input_size"] = 64
    app.run()
    app.switch_page(PAGE).run()
    assert not app.exception
    assert app.title[0].value == "Feature maps"
    assert app.selectbox(key="fm_stage").value == "layer1"


def plotly_titles(at: AppTest) -> list[str]:
    titles = []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        titles.append(spec["layout"]["title"]["text"])
    return titles


def test_sample_image_shows_every_section(fm: AppTest) -> None:
    assert fm.session_state["image"].mode == "RGB"
    assert fm.session_state["image_tensor"].shape == (1, 3, 64, 64)
    assert fm.selectbox(key="fm_stage").value == "layer1"
    assert fm.selectbox(key="fm_block").value == 1  # the end of the stage
    expected = {"Channels": "layer1.1: 16 of 64 channels", "Filmstrip": "From conv1", "Overlay": "upsampled",
                "Preprocessing": "normalised tensor", "conv1 filters": "conv1's filters",
                "Residual stream": "Residual stream"}
    for tab, title in expected.items():
        fm.session_state["fm_tab"] = tab
        fm.run()
        titles = plotly_titles(fm)
        assert any(title in t for t in titles), (tab, titles)
        assert any(t.startswith("layer1.1: 16 of 64 channels") for t in titles)  # Channels is always drawn
        assert not fm.error and not fm.exception


def test_only_the_open_tab_and_channels_are_drawn(fm: AppTest) -> None:
    """A hidden tab costs nothing: the first run draws Channels only; opening Overlay adds it, nothing else."""
    titles = plotly_titles(fm)
    assert not any("From conv1" in t or "upsampled" in t or "Residual stream" in t for t in titles), titles
    fm.session_state["fm_tab"] = "Overlay"
    fm.run()
    titles = plotly_titles(fm)
    assert any("upsampled" in t for t in titles) and not any("From conv1" in t for t in titles), titles


def test_picking_a_layer_by_stage_and_block(fm: AppTest) -> None:
    fm.selectbox(key="fm_stage").select("layer2").run()
    assert not fm.exception
    assert fm.selectbox(key="fm_block").value == 1  # a new stage starts at its last block
    fm.selectbox(key="fm_block").select(0).run()
    assert not fm.exception
    assert any(t.startswith("layer2.0: 16 of 128 channels") for t in plotly_titles(fm))
    fm.selectbox(key="fm_stage").select("stem").run()
    assert not fm.exception
    assert any(t.startswith("stem · conv1: 16 of 64 channels") for t in plotly_titles(fm))


def test_channels_of_my_choice_and_per_channel_scale(fm: AppTest) -> None:
    fm.radio(key="fm_rank").set_value("channels I choose").run()
    fm.multiselect(key="fm_channels").set_value([3, 5]).run()
    fm.radio(key="fm_scale").set_value("per channel").run()
    assert not fm.exception
    titles = plotly_titles(fm)
    assert any("2 of 64 channels" in t and "own colour scale" in t for t in titles)
    assert fm.dataframe[0].value["channel"].tolist() == [3, 5]


def test_overlay_channel_and_opacity(fm: AppTest) -> None:
    fm.session_state["fm_tab"] = "Overlay"
    fm.run()
    fm.number_input(key="fm_overlay_channel").set_value(7).run()
    fm.slider(key="fm_opacity").set_value(0.8).run()
    assert not fm.exception
    assert any("channel 7, upsampled" in t for t in plotly_titles(fm))


def test_uploading_an_image_replaces_the_sample(fm: AppTest) -> None:
    fm.file_uploader(key="image_upload").upload("holiday.jpg", jpeg(90, 70), "image/jpeg").run()
    assert not fm.exception and not fm.error
    assert fm.session_state["image"].size == (90, 70)
    assert fm.session_state["image_name"] == "upload: holiday.jpg"
    fm.selectbox(key="fm_stage").select("layer3").run()
    assert not fm.exception
    assert any(t.startswith("layer3.1:") for t in plotly_titles(fm))


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [("notes.png", b"this is not a picture\n" * 10, "looks like text"), ("empty.jpg", b"", "empty"),
     ("cut.jpg", jpeg()[:300], "truncated"), ("bomb.png", png_claiming(100_000, 100_000), "megapixels"),
     ("huge.jpg", b"\xff" * (21 * 2**20), "images up to 20 MB")],
)
def test_bad_upload_is_an_error_message_and_the_session_goes_on(fm: AppTest, name: str, data: bytes,
                                                                words: str) -> None:
    fm.file_uploader(key="image_upload").upload(name, data, "image/png").run()
    assert not fm.exception
    assert any(words in e.value for e in fm.error)
    assert fm.session_state["image"] is None
    fm.file_uploader(key="image_upload").clear().run()  # back to the sample: everything works again
    assert not fm.exception and not fm.error
    assert fm.session_state["image"] is not None


def test_camera_photo_is_used_when_the_camera_is_on(fm: AppTest) -> None:
    fm.toggle(key="camera_on").set_value(True).run()
    fm.camera_input(key="camera").upload("shot.jpg", jpeg(40, 30)).run()
    assert not fm.exception
    assert fm.session_state["image_name"] == "camera photo"
    assert fm.session_state["image"].size == (40, 30)


def test_cost_is_shown_before_running(fm: AppTest) -> None:
    assert any("G mult-adds" in c.value and "of feature maps" in c.value for c in fm.caption)


def test_large_input_asks_before_running(fm: AppTest) -> None:
    fm.session_state["input_size"] = 544
    fm.run()
    assert not fm.exception
    assert any("That is large" in w.value for w in fm.warning)
    assert not plotly_titles(fm)  # nothing ran yet
    fm.checkbox(key="fm_confirm").check().run()
    assert not fm.exception
    assert fm.session_state["image_tensor"].shape == (1, 3, 544, 544)
    assert any(t.startswith("layer1.1:") for t in plotly_titles(fm))


# --------------------------------------------------------------------------------------------- the page's figures


def _tiles(fig) -> list[np.ndarray]:
    """The tiles of a channel grid, read back from its one canvas: the NaN-free blocks, row by row."""
    z = np.asarray(fig.data[0].z, dtype=np.float64)
    filled = ~np.isnan(z)
    rows = np.flatnonzero(np.diff(np.r_[0, filled.any(axis=1).astype(int), 0]) != 0).reshape(-1, 2)
    tiles = []
    for top, bottom in rows:
        band = filled[top:bottom].any(axis=0).astype(int)
        for left, right in np.flatnonzero(np.diff(np.r_[0, band, 0]) != 0).reshape(-1, 2):
            tiles.append(z[top:bottom, left:right])
    return tiles


def test_feature_grid_tiles_titles_and_colour_scales() -> None:
    fmap = torch.zeros(1, 6, 4, 4)
    fmap[0, 2] = 4.0
    fmap[0, 2, 3, 3] = 3.0
    fmap[0, 5, 0, 0] = 1.0
    fmap[0, 0] = 0.5
    fmap[0, 0, 0, 0] = 0.0
    stats = channel_stats(fmap)
    shared = plots.feature_grid(fmap, [2, 5, 0], stats=stats, shared_scale=True, cols=2)
    assert len(shared.data) == 1 and shared.data[0].type == "heatmap"  # one canvas, not a trace per tile
    tiles = _tiles(shared)
    assert len(tiles) == 3
    for tile, c in zip(tiles, [2, 5, 0], strict=True):  # each tile is its channel, in order, unscaled
        np.testing.assert_allclose(tile, fmap[0, c].numpy())
    heat = shared.data[0]
    assert (heat.zmin, heat.zmax, heat.showscale) == (0.0, 4.0, True)
    notes = shared.layout.annotations
    assert [n.text.split("</b>")[0] for n in notes] == ["<b>ch 2", "<b>ch 5", "<b>ch 0"]
    assert "mean 3.94" in notes[0].text and "0% zeros" in notes[0].text and "94% zeros" in notes[1].text
    assert notes[0].y < notes[2].y  # channel 0 starts the second row (the y axis runs top-down)
    assert notes[0].x < notes[1].x and notes[0].x == notes[2].x
    assert shared.layout.yaxis.range[0] > shared.layout.yaxis.range[1] and shared.layout.yaxis.scaleanchor == "x"
    own = plots.feature_grid(fmap, [2, 5, 0], shared_scale=False)
    for tile in _tiles(own):  # each tile stretched to its own 0..1
        assert (tile.min(), tile.max()) == (0.0, 1.0)
    assert (own.data[0].zmin, own.data[0].zmax, own.data[0].showscale) == (0.0, 1.0, False)
    assert "own colour scale" in own.layout.title.text and "range" in own.data[0].hovertemplate
    assert [n.text for n in own.layout.annotations] == ["ch 2", "ch 5", "ch 0"]
    with pytest.raises(ValueError):
        plots.feature_grid(fmap, [])


def test_large_maps_are_pooled_for_display() -> None:
    fmap = torch.arange(2 * 448 * 448, dtype=torch.float32).view(1, 2, 448, 448)
    fig = plots.feature_grid(fmap, [0, 1])
    first, second = _tiles(fig)
    assert first.shape == second.shape == (112, 112)
    assert "1/4 resolution" in fig.layout.title.text
    assert first.mean() == pytest.approx(fmap[0, 0].mean().item(), rel=1e-6)
    assert second.mean() == pytest.approx(fmap[0, 1].mean().item(), rel=1e-6)


def test_filmstrip_has_one_panel_per_stage_with_shapes() -> None:
    acts = {"stem · conv1": torch.rand(1, 64, 16, 16), "layer1": torch.rand(1, 256, 8, 8),
            "layer2": torch.rand(1, 512, 4, 4)}
    fig = plots.filmstrip(acts)
    assert [np.asarray(t.z).shape for t in fig.data] == [(16, 16), (8, 8), (4, 4)]
    np.testing.assert_allclose(np.asarray(fig.data[1].z), acts["layer1"][0].mean(0).numpy(), rtol=1e-5)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["stem · conv1<br>64 × 16 × 16", "layer1<br>256 × 8 × 8", "layer2<br>512 × 4 × 4"]


def test_overlay_stretches_the_map_over_the_image() -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    heat = upsample(torch.rand(4, 4), (32, 32))
    assert heat.shape == (32, 32)
    fig = plots.channel_overlay(image, heat, opacity=0.3)
    assert fig.data[0].type == "image" and fig.data[0].source.startswith("data:image/png;base64,")
    assert fig.data[1].opacity == 0.3 and fig.data[1].dx == 2.0
    with pytest.raises(ValueError):
        plots.channel_overlay(image, np.zeros((65, 65)))


def test_first_conv_filters_montage() -> None:
    weight = torch.randn(64, 3, 7, 7)
    fig = plots.first_conv_filters(weight)
    png = fig.data[0].source
    img = Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1])))
    assert img.size == ((8 * 8 + 1) * 8, (8 * 8 + 1) * 8)  # 8 x 8 filters of 7 px + 1 px gaps, zoomed 8x
    assert "64 filters, 7×7 pixels, 3 colours" in fig.layout.title.text
    grey = plots.first_conv_filters(torch.randn(16, 1, 3, 3))  # a greyscale net's (d2l's FashionMNIST one)
    assert "16 filters, 3×3 pixels, grey" in grey.layout.title.text
    with pytest.raises(ValueError):
        plots.first_conv_filters(torch.randn(16, 2, 3, 3))


def test_normalised_channels_are_centred_on_zero() -> None:
    fig = plots.normalised_channels(torch.randn(1, 3, 32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert len(fig.data) == 3 and all(t.zmid == 0 for t in fig.data)
    assert "0.485" in fig.layout.annotations[0].text


def test_residual_stream_chart_norms_and_ratios() -> None:
    rows = [BlockStream("layer1.0", "layer1", 0, "projection", 2.0, 4.0, 0.5),
            BlockStream("layer2.0", "layer2", 0, "identity", 3.0, 2.0, 1.5)]
    fig = plots.residual_stream_chart(rows)
    names = [t.name for t in fig.data]
    assert names == ["shortcut x", "residual branch F(x)", "ratio"]
    assert list(fig.data[2].y) == [0.5, 1.5] and list(fig.data[0].x) == ["layer1.0", "layer2.0"]
    with pytest.raises(ValueError):
        plots.residual_stream_chart([])


def test_picked_channels_survive_a_change_to_a_smaller_layer(fm: AppTest) -> None:
    fm.session_state["fm_tab"] = "Overlay"
    fm.selectbox(key="fm_stage").select("layer4").run()
    fm.radio(key="fm_rank").set_value("channels I choose").run()
    fm.multiselect(key="fm_channels").set_value([3, 300]).run()
    assert not fm.exception
    fm.selectbox(key="fm_stage").select("stem").run()  # 64 channels: 300 no longer exists
    assert not fm.exception
    assert fm.multiselect(key="fm_channels").value == [3]
    assert fm.number_input(key="fm_overlay_channel").value < 64


def test_a_stage_or_block_change_slices_the_capture_instead_of_running_again(fm: AppTest, monkeypatch) -> None:
    from explorer import activations

    calls = []
    real = activations.capture_with_stream
    monkeypatch.setattr(activations, "capture_with_stream", lambda *a, **k: calls.append(1) or real(*a, **k))
    fm.selectbox(key="fm_stage").select("layer3").run()
    fm.selectbox(key="fm_block").select(0).run()
    fm.selectbox(key="fm_stage").select("stem").run()
    assert not fm.exception
    assert calls == []  # every block was captured once, on the first run
    assert any(t.startswith("stem · conv1") for t in plotly_titles(fm))


def test_a_tab_that_is_not_drawn_keeps_its_controls(app) -> None:
    """The Overlay tab's opacity survives runs with that tab closed (Streamlit drops the state of a widget a run
    does not draw; url_state.keep writes it back)."""
    app.session_state["arch"] = "resnet18"
    app.session_state["input_size"] = 64
    app.run()
    app.switch_page("views/feature_maps.py")
    app.session_state["fm_tab"] = "Overlay"
    app.run()
    app.slider(key="fm_opacity").set_value(0.25).run()
    app.session_state["fm_tab"] = "Channels"
    app.run()
    assert not app.exception and app.session_state["fm_opacity"] == 0.25
    app.session_state["fm_tab"] = "Overlay"
    app.run()
    assert app.slider(key="fm_opacity").value == 0.25
