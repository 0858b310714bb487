"""Every page of the app, declared once: its file, URL path, title, icon, one-line blurb and tabs, and the choices
of its controls that links need. ``app.py``'s navigation, Home's cards, the lesson's links, the lab's links and
``explorer.ui.url_params`` read them from here; the views import their own choices from here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from explorer.images import DEFAULT_SAMPLE
from explorer.models import CIFAR_DEPTHS
from explorer.ui import keys

__all__ = [
    "ARCHITECTURE",
    "ATTRIBUTIONS",
    "ATTR_DEFAULT_METHODS",
    "ATTR_MAX_METHODS",
    "ATTR_TOP",
    "ATTR_VIEWS",
    "BLOCKS",
    "FEATURE_MAPS",
    "FM_RANK",
    "HOME",
    "LAB",
    "LAB_CIFAR",
    "LAB_FAMILIES",
    "LAB_IMAGENET",
    "LAB_PAIR",
    "LAB_PRESET",
    "LAB_RACES",
    "LAB_RACE_DEPTHS",
    "LESSON",
    "LESSON_LINKS",
    "PAGES",
    "WHY",
    "WHY_DEPTHS",
    "WHY_SOURCES",
    "Link",
    "Page",
    "by_url",
]


@dataclass(frozen=True)
class Page:
    """One page: ``file`` (run by ``st.navigation``), ``title``, ``icon`` (a material icon), ``blurb`` (Home's card)
    and ``tabs`` (tab id -> label; the open tab's label is kept in session state under ``tab_key``, and so in the
    link)."""

    file: str
    title: str
    icon: str
    blurb: str
    tabs: Mapping[str, str] = field(default_factory=dict)
    tab_key: str | None = None
    default: bool = False

    @property
    def url(self) -> str:
        """The page's URL path as ``st.navigation`` names it: ``""`` for the default page, else the file's stem."""
        return "" if self.default else Path(self.file).stem

    def tab(self, tab_id: str) -> str:
        """The label of tab ``tab_id`` (what a link's ``tab_key`` carries); a ``KeyError`` for an unknown id."""
        return self.tabs[tab_id]


def _tabs(**labels: str) -> Mapping[str, str]:
    return MappingProxyType(dict(labels))


HOME = Page("views/home.py", "Home", ":material/home:", "What the app is, where to start, the device in use.",
            default=True)
LESSON = Page("views/lesson.py", "Lesson: ResNet in fourteen steps", ":material/school:",
              "The paper's ideas in order, then why they work, each with a live figure.")
ARCHITECTURE = Page(
    "views/architecture.py", "Architecture", ":material/account_tree:",
    "Table 1 of the paper for your model, layer by layer.",
    _tabs(stages="Stages (Table 1)", layers="Layers", charts="Charts", compare="Compare"), keys.ARCH_TAB)
BLOCKS = Page(
    "views/blocks.py", "Blocks & shortcuts", ":material/call_split:",
    "One block drawn op by op; identity vs projection.",
    _tabs(block="The block", run="Run a tensor", types="Basic vs bottleneck", stride="v1 vs v1.5",
          tricks="v1 → B → C → D", options="Options A / B / C", preact="original vs pre-activation",
          size="Output size", merge="Add vs concat", mistakes="Common mistakes"),
    keys.BLOCK_TAB)
FEATURE_MAPS = Page(
    "views/feature_maps.py", "Feature maps", ":material/grid_view:",
    "Upload an image and watch each stage transform it.",
    _tabs(channels="Channels", filmstrip="Filmstrip", overlay="Overlay", preprocessing="Preprocessing",
          filters="conv1 filters", stream="Residual stream"), keys.FM_TAB)
ATTRIBUTIONS = Page(
    "views/attributions.py", "Predictions & attributions", ":material/troubleshoot:",
    "Top-5 and why: Grad-CAM, IG, and more.",
    _tabs(compare="Compare methods", filmstrip="CAM filmstrip", knockout="Block knock-out", sanity="Sanity check"),
    keys.ATTR_TAB)
LAB = Page("views/lab.py", "Degradation lab", ":material/science:",
           "Plain vs residual nets: gradients and a training race.")
WHY = Page(
    "views/why.py", "Why it works", ":material/lightbulb:",
    "Loss landscapes, the ensemble view, the branch at every add, identity mappings — measured live.",
    _tabs(landscape="Loss landscape", ensemble="Ensemble view", branch="The branch at every add",
          identity="Identity mappings"), keys.WHY_TAB)

PAGES: tuple[Page, ...] = (HOME, LESSON, ARCHITECTURE, BLOCKS, FEATURE_MAPS, ATTRIBUTIONS, LAB, WHY)
"""In the navigation's order."""


def by_url(url: str) -> Page:
    """The page at URL path ``url`` (``""`` for Home); a ``KeyError`` for an unknown one."""
    for page in PAGES:
        if page.url == url:
            return page
    raise KeyError(url)


# --- Feature maps: how channels are ranked (the radio's labels -> explorer.activations.top_channels's ``by``)
FM_RANK: Mapping[str, str] = MappingProxyType(
    {"top by mean activation": "mean", "top by max activation": "max", "channels I choose": "pick"})

# --- Predictions & attributions
ATTR_DEFAULT_METHODS: tuple[str, ...] = ("saliency", "integrated_gradients", "grad_cam")
ATTR_MAX_METHODS = 4
ATTR_VIEWS: Mapping[str, str] = MappingProxyType({
    "absolute": "absolute — how much each pixel matters, either way",
    "positive": "positive — evidence for the class",
    "negative": "negative — evidence against the class",
})
ATTR_TOP = -1
"""The "class to explain" option meaning "whatever the network predicts"."""

# --- Degradation lab: the gradient-flow section's families and the race's networks (the radios' labels)
LAB_CIFAR = "CIFAR nets of the paper (6n+2 layers)"
LAB_IMAGENET = "ImageNet architectures"
LAB_FAMILIES: tuple[str, ...] = (LAB_CIFAR, LAB_IMAGENET)
LAB_PRESET = "Degradation preset: plain-20 and plain-56 against ResNet-20 and ResNet-56"
LAB_PAIR = "One pair: plain and ResNet of the same depth"
LAB_RACES: tuple[str, ...] = (LAB_PRESET, LAB_PAIR)
LAB_RACE_DEPTHS: tuple[int, ...] = (8, 14, *CIFAR_DEPTHS)


# --- Why it works: where its networks come from, and the depths of the twins it trains
WHY_HERE = "Twins trained here on handwritten digits"
WHY_RACE = "The twins of your Degradation lab race"
WHY_SIDEBAR = "The sidebar's model on CIFAR-10"
WHY_SOURCES: tuple[str, ...] = (WHY_HERE, WHY_RACE, WHY_SIDEBAR)
WHY_DEPTHS: tuple[int, ...] = (8, 14, 20, 32, 44, 56)
WHY_TWINS, WHY_MODEL = "the twins, on a test digit", "the sidebar's model, on a photograph"
WHY_BRANCH: tuple[str, ...] = (WHY_TWINS, WHY_MODEL)
WHY_LESSON_TWINS: Mapping[str, object] = MappingProxyType({
    keys.WHY_DEPTH: 20, keys.WHY_EPOCHS: 8, keys.WHY_SIZE: 8, keys.WHY_LR: 0.05, keys.WHY_TRAIN_IMAGES: 0,
    keys.WHY_SEED: 0})
"""The lesson's twins (``explorer.why.LESSON_RECIPE``) as the Why page's controls: a lesson link opens them. Written
out, not imported: ``explorer.why`` loads pandas, which the first page does without (a test pins them equal)."""


# --- The lesson: where each step's "Open … in this state" button leads


@dataclass(frozen=True)
class Link:
    """A page in a given state: its open tab (an id of ``page.tabs``) and the values of other keys."""

    page: Page
    tab: str | None = None
    values: Mapping[str, object] = field(default_factory=dict)

    @property
    def state(self) -> dict[str, object]:
        """The link's session keys -> values (the open tab by its label)."""
        tab = {} if self.tab is None or self.page.tab_key is None else {self.page.tab_key: self.page.tab(self.tab)}
        return {**tab, **self.values}


LESSON_LINKS: Mapping[int, Link] = MappingProxyType({
    1: Link(LAB, values={keys.LAB_PRESET: LAB_PRESET}),
    2: Link(BLOCKS, "block", {keys.BLOCK_STAGE: "layer2", keys.BLOCK_INDEX: 0}),
    3: Link(BLOCKS, "options"),
    4: Link(BLOCKS, "types"),
    5: Link(ARCHITECTURE, values={keys.LAYER_DEPTH: 1}),
    6: Link(BLOCKS, "stride", {keys.BLOCK_STAGE: "layer2", keys.BLOCK_INDEX: 0}),
    7: Link(BLOCKS, "size"),  # the calculator opens on the stem conv
    8: Link(FEATURE_MAPS, values={keys.FM_STAGE: "layer3", keys.SAMPLE: DEFAULT_SAMPLE}),
    9: Link(ATTRIBUTIONS, values={keys.METHODS: ["grad_cam", "integrated_gradients"], keys.SAMPLE: DEFAULT_SAMPLE}),
    10: Link(LAB, values={keys.LAB_DEPTH: 56}),
    11: Link(WHY, "landscape", {keys.WHY_SOURCE: WHY_HERE, **WHY_LESSON_TWINS}),
    12: Link(WHY, "ensemble", {keys.WHY_SOURCE: WHY_HERE, **WHY_LESSON_TWINS}),
    13: Link(WHY, "branch", {keys.WHY_BRANCH_ON: WHY_TWINS, **WHY_LESSON_TWINS}),
    14: Link(WHY, "identity", {keys.WHY_ID_DEPTH: 56}),
})
"""Step number -> the full page that goes deeper, in the state the step talks about."""

