"""AppTest: a model trained in the degradation lab, opened on the Feature maps and Predictions & attributions
pages — from the session store, through the Lab page's uploader, and with the Lab page's "Open" button."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from explorer import lab
from explorer.ui import lab_models, pages

NAME = "ResNet-8 on digits"
SMALL = {"arch": "resnet18", "weights": "random", "input_size": 64}  # the sidebar's model, quick on a CPU


@pytest.fixture(scope="module")
def trained() -> tuple[bytes, lab.LabDataset]:
    """A ResNet-8 trained for one quick epoch on 64 digits at 16 px, saved as the Lab page saves it."""
    data = lab.digits_dataset(size=16, train_limit=64)
    model = lab.lab_model(8, plain=False)
    history = lab.train_race({"ResNet-8": model}, data, lab.RaceRecipe(epochs=1, batch_size=32))
    meta = lab.TrainedMeta(8, False, "digits", data.classes, input_size=16, epochs=1,
                           test_accuracy=float(history.epochs.test_accuracy.iloc[-1]), mean=data.mean, std=data.std,
                           split_seed=0)  # fmt: skip
    return lab.save_trained(model, meta), data


def chart(at: AppTest, key: str) -> dict:
    for element in at.get("plotly_chart"):
        if element.proto.id and key in element.proto.id:
            return json.loads(element.proto.spec)
    raise AssertionError(f"no chart {key!r}")


def open_page(app: AppTest, page: str, payload: bytes, *, choose: bool = True) -> AppTest:
    for key, value in SMALL.items():
        app.session_state[key] = value
    app.session_state[lab_models.STORE] = {NAME: payload}
    app.run()
    app.switch_page(page).run()
    assert not app.exception, app.exception
    if choose:
        app.radio(key=lab_models.RADIO).set_value(NAME).run()
        assert not app.exception, app.exception
    return app


def open_tab(at: AppTest, tab: str) -> AppTest:
    """Open Predictions & attributions' tab ``tab`` (an id of its registry entry): only the open tab is drawn."""
    at.session_state["attr_tab"] = pages.ATTRIBUTIONS.tab(tab)
    return at.run()


def stages(at: AppTest) -> list[str]:
    """The Feature maps page's stage choices by module name ("stem", "layer1", ...), without their paper label."""
    return [option.split(" · ")[0] for option in at.selectbox(key="fm_stage").options]


def texts(at: AppTest) -> str:
    return "\n".join([c.value for c in at.caption] + [m.value for m in at.markdown])


def test_without_lab_models_there_is_no_picker(app):
    for key, value in SMALL.items():
        app.session_state[key] = value
    app.run()
    for page in ("views/feature_maps.py", "views/attributions.py"):
        app.switch_page(page).run()
        assert not app.exception
        assert lab_models.RADIO not in [r.key for r in app.radio]


def test_feature_maps_of_a_lab_model(app, trained):
    payload, data = trained
    open_page(app, "views/feature_maps.py", payload, choose=False)
    picker = app.radio(key=lab_models.RADIO)
    assert picker.options == ["Sidebar choice (resnet18)", f"`{NAME}` (trained in the lab)"]
    assert picker.value == lab_models.SIDEBAR  # the sidebar's model until the user picks another
    assert stages(app)[-1] == "layer4"

    app.radio(key=lab_models.RADIO).set_value(NAME).run()
    assert not app.exception and not app.error
    assert app.radio(key="lab_image_source").value == lab_models.DIGIT  # a digits model starts on a test digit
    assert "trained in the lab: ResNet-8 on digits, 1 epoch" in texts(app)
    assert stages(app) == ["stem", "layer1", "layer2", "layer3"]
    prep = app.session_state["_lab_image_prep"][1]
    assert tuple(prep.tensor.shape) == (1, 3, 16, 16) and prep.mean == data.mean
    # the filmstrip: the stem and three stages, 16 -> 16 -> 32 -> 64 channels on 16 -> 16 -> 8 -> 4 grids
    app.session_state["fm_tab"] = "Filmstrip"  # a hidden tab is not drawn
    app.run()
    film = [a["text"].split("<br>") for a in chart(app, "fm_film")["layout"]["annotations"]]
    assert [title.split(" · ")[0] for title, _ in film] == ["stem", "layer1", "layer2", "layer3"]
    assert [shape for _, shape in film] == ["16 × 16 × 16", "16 × 16 × 16", "32 × 8 × 8", "64 × 4 × 4"]

    app.selectbox(key="fm_stage").set_value("layer3").run()
    assert not app.exception
    assert any("**layer3.0** outputs 64 channels of 4 × 4" in c.value for c in app.caption)
    app.session_state["fm_tab"] = "conv1 filters"
    app.run()
    assert "16 filters, 3×3 pixels" in chart(app, "fm_filters")["layout"]["title"]["text"]
    app.session_state["fm_tab"] = "Residual stream"
    app.run()
    stream = chart(app, "fm_stream")
    assert list(stream["data"][0]["x"]) == ["layer1.0", "layer2.0", "layer3.0"]
    app.session_state["fm_tab"] = "Preprocessing"
    app.run()
    assert any("mean and standard deviation of the digits training images" in m.value for m in app.markdown)

    # a photograph works too (with a warning that it means little to a digits model)
    app.radio(key="lab_image_source").set_value(lab_models.PHOTO).run()
    assert not app.exception and not app.error
    assert any("a photograph means little" in c.value for c in app.caption)
    assert tuple(app.session_state["_lab_image_prep"][1].tensor.shape) == (1, 3, 16, 16)


def test_predictions_and_attributions_of_a_lab_model(app, trained, panels):
    payload, _ = trained
    app = open_page(app, "views/attributions.py", payload)
    assert not app.error and not app.warning
    bars = chart(app, "attr_top5")
    assert bars["layout"]["title"]["text"] == "Top-5 predictions"
    assert all(name.split(" ")[0] in "0123456789" for name in bars["data"][0]["y"])  # digit classes, not ImageNet
    assert app.selectbox(key="target_class").options[1:] == [f"{d} ({d})" for d in range(10)]

    app.multiselect(key="methods").set_value(["saliency", "grad_cam"]).run()
    assert app.selectbox(key="gc_layer").value == "layer3"  # the last stage, not layer4
    app.selectbox(key="target_class").set_value(7).run()
    app.button(key="run_attr").click().run()
    assert not app.exception and not app.error
    assert "7 (7)" in panels[-1].options["title"] and len(app.tabs[0].get("image")) == 1
    assert any("passes of ResNet-8-digits" in m.value for m in app.markdown)

    open_tab(app, "filmstrip")
    assert any("layer3 knows the class" in m.value and "4×4 at 16 px" in m.value for m in app.markdown)
    app.button(key="run_film").click().run()
    assert not app.exception and not app.error
    titles = " ".join(panels[-1].maps)
    assert "layer1" in titles and "layer3" in titles and "layer4" not in titles and "4×4 grid" in titles

    open_tab(app, "knockout")
    assert app.multiselect(key="knockout").options == ["layer1.0", "layer2.0", "layer3.0"]
    app.multiselect(key="knockout").set_value(["layer2.0"]).run()
    assert not app.exception
    assert chart(app, "attr_knockout")["layout"]["title"]["text"].startswith("Top-5 with and without")

    open_tab(app, "sanity")
    assert app.selectbox(key="sanity_from").options == ["fc", "layer3", "layer2", "layer1", "stem"]
    app.button(key="run_sanity").click().run()
    assert not app.exception and not app.error
    assert any("Rank correlation" in m.label for m in app.metric)


def test_imagenet_settings_do_not_break_a_lab_model(app, trained):
    """Widgets left on ImageNet values (layer4, class 500, a 32 px occlusion window) are reset, not a crash."""
    payload, _ = trained
    app = open_page(app, "views/attributions.py", payload, choose=False)
    app.multiselect(key="methods").set_value(["grad_cam", "occlusion"]).run()
    app.selectbox(key="gc_layer").set_value("layer4").run()
    app.selectbox(key="target_class").set_value(500).run()
    open_tab(app, "knockout").multiselect(key="knockout").set_value(["layer4.1"]).run()
    open_tab(app, "sanity").selectbox(key="sanity_from").set_value("layer4").run()
    assert not app.exception
    app.radio(key=lab_models.RADIO).set_value(NAME).run()
    assert not app.exception, app.exception
    assert app.selectbox(key="target_class").value == -1
    assert "layer4" not in app.selectbox(key="sanity_from").options
    assert open_tab(app, "knockout").multiselect(key="knockout").value == []
    assert open_tab(app, "compare").selectbox(key="gc_layer").value == "layer3"
    assert app.slider(key="occ_window").value == 16 and app.slider(key="occ_window").max == 16
    # and back to the sidebar's model
    app.radio(key=lab_models.RADIO).set_value(lab_models.SIDEBAR).run()
    assert not app.exception
    assert "layer4" in app.selectbox(key="gc_layer").options


def test_the_choice_follows_the_user_from_page_to_page(app, trained):
    payload, _ = trained
    open_page(app, "views/feature_maps.py", payload)
    app.switch_page("views/lab.py").run()  # a page without the picker: its widget state is dropped
    app.switch_page("views/attributions.py").run()
    assert not app.exception
    assert app.radio(key=lab_models.RADIO).value == NAME
    assert all(name.split(" ")[0] in "0123456789" for name in chart(app, "attr_top5")["data"][0]["y"])


def test_the_lab_page_opens_an_uploaded_model_and_refuses_a_bad_file(app, trained):
    payload, _ = trained
    app.run()
    app.switch_page("views/lab.py").run()
    uploader = app.get("file_uploader")
    assert any(u.proto.label == "Open a saved lab model (.safetensors)" for u in uploader)
    # the size shown is the size accepted: the lab's own limit, which load_trained enforces too
    lab_upload = next(u for u in uploader if u.proto.id.endswith("lab_model_upload"))
    assert lab_upload.proto.max_upload_size_mb == lab.MAX_FILE_MB
    assert f"at most {lab.MAX_FILE_MB} MB" in lab_upload.proto.help
    app.file_uploader(key="lab_model_upload").upload("not-a-model.safetensors", b"\x00" * 64).run()
    assert not app.exception
    assert any("safetensors" in e.value for e in app.error)
    assert lab_models.STORE not in app.session_state or not app.session_state[lab_models.STORE]

    app.file_uploader(key="lab_model_upload").upload("ResNet-8-digits.safetensors", payload).run()
    assert not app.exception and not app.error
    assert any("ResNet-8-digits" in s.value and "is open" in s.value for s in app.success)
    assert list(app.session_state[lab_models.STORE]) == ["ResNet-8-digits"]
    app.switch_page("views/feature_maps.py").run()
    assert not app.exception
    assert app.radio(key=lab_models.RADIO).value == "ResNet-8-digits"  # opened means chosen
    assert stages(app) == ["stem", "layer1", "layer2", "layer3"]


def test_the_open_button_after_a_race_goes_to_feature_maps(app, trained):
    _, data = trained
    models = lab.race_models(((8, True), (8, False)))
    run = lab.LiveRace(models, data, lab.RaceRecipe(epochs=1, batch_size=32)).start()
    run.join(120)
    assert run.snapshot().status == "finished"
    app.session_state["lab_race"] = run
    app.session_state["lab_race_setup"] = dict(dataset=data.name, classes=data.classes, size=data.size,
                                               mean=data.mean, std=data.std, seed=0)  # fmt: skip
    for key, value in SMALL.items():
        app.session_state[key] = value
    app.run()
    app.switch_page("views/lab.py").run()
    assert not app.exception
    _, meta = lab.load_trained(app.session_state["lab_downloads"][1]["plain-8"])
    assert meta.mean == data.mean and meta.std == data.std and meta.split_seed == 0
    app.button(key="lab_open_plain-8").click().run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Feature maps"
    assert app.radio(key=lab_models.RADIO).value == "plain-8 on digits"
    assert stages(app) == ["stem", "layer1", "layer2", "layer3"]
