"""Every session-state key of the app, named once. Widgets use these as their ``key``; pages read them back.

A key is the same string in the URL and in ``st.session_state``; never write the string elsewhere. The model
configuration's keys are its field names (``explorer.config.ModelConfig.FIELDS``).
"""


# --- Sidebar (explorer/ui/sidebar.py, cached.py)
ARCH = "arch"
CHECKPOINT = "checkpoint"
CHECKPOINT_UPLOAD = "checkpoint_upload"
CHECKPOINTS = "checkpoints"
CHECKPOINT_MEAN = "checkpoint_mean"  # custom mean text ("0.5, 0.5, 0.5") of the checkpoint's preprocessing
CHECKPOINT_NORM = "checkpoint_norm"  # the checkpoint's normalisation preset (explorer.config.NORMS)
CHECKPOINT_PREP = "checkpoint_prep"  # {checkpoint sha256: its remembered preprocessing}
CHECKPOINT_STD = "checkpoint_std"  # custom std text of the checkpoint's preprocessing
CHECKPOINT_ASSUME = "checkpoint_assume"  # {checkpoint sha256: {knob: value}}; + "_" + knob: its selectbox
CHECKPOINT_CLASS_PRESET = "checkpoint_class_preset"  # "own" or a name of explorer.checkpoints.CLASS_PRESETS
CLASS_FILES = "class_files"  # {sha256: (file name, bytes)} of the uploaded class-names file (one kept)
CLASS_NAMES = "class_names"  # sha256 of the uploaded class-names file, or None
CLASS_NAMES_UPLOAD = "class_names_upload"
PRIVATE_CHECKPOINT_PREP_SHOWN = "_checkpoint_prep_shown"  # the checkpoint whose preprocessing the widgets show
PRIVATE_ARCH_SHOWN = "_arch_shown"  # the preset the knobs were set for (a new one resets the knobs it owns)
INPUT_SIZE = "input_size"
PLAIN = "plain"
PREACT = "preact"
SE_RATIO = "se_ratio"
SHORTCUT = "shortcut"
STEM = "stem"
VARIANT = "variant"
WEIGHTS = "weights"

# --- Image picker (explorer/ui/image_input.py, lab_models.py)
CAMERA = "camera"
CAMERA_ON = "camera_on"
IMAGE = "image"
IMAGE_KEY = "image_key"
IMAGE_NAME = "image_name"
IMAGE_PREPROCESSED = "image_preprocessed"
IMAGE_SOURCE = "image_source"
IMAGE_TENSOR = "image_tensor"
IMAGE_UPLOAD = "image_upload"
PRIVATE_IMAGE_PICKER_CACHE = "_image_picker_cache"
LAB_DIGIT = "lab_digit"
LAB_IMAGE_SOURCE = "lab_image_source"
LAB_MODELS = "lab_models"
SAMPLE = "sample"

# --- Architecture
COMPARE_ARCH = "compare_arch"
ARCH_TAB = "arch_tab"  # the open tab of Architecture (its label)
LAYER_DEPTH = "layer_depth"
LAYERS_CSV = "layers_csv"

# --- Blocks & shortcuts
BLOCK_DIAGRAM = "block_diagram"
BLOCK_INDEX = "block_index"
BLOCK_RUN = "block_run"
BLOCK_RUNS = "block_runs"
BLOCK_SEED = "block_seed"
BLOCK_SOURCE = "block_source"
BLOCK_STAGE = "block_stage"
BLOCK_TAB = "block_tab"
BLOCKS_CSV = "blocks_csv"
CALC_DILATION = "calc_dilation"
CALC_KERNEL = "calc_kernel"
CALC_PADDING = "calc_padding"
CALC_PRESET = "calc_preset"
CALC_SIZE = "calc_size"
CALC_STRIDE = "calc_stride"
MAGNITUDES = "magnitudes"
MISTAKE_DOWNSAMPLE = "mistake_downsample"
MISTAKE_IN = "mistake_in"
MISTAKE_KIND = "mistake_kind"
MISTAKE_OUT = "mistake_out"
MISTAKE_SIZE = "mistake_size"
MISTAKE_STRIDE = "mistake_stride"
OPTIONS = "options"
PREACT_BLOCKS = "preact_blocks"
PREACT_ORIGINAL = "preact_original"
PREACT_PREACT = "preact_preact"
PREACT_STACK = "preact_stack"
SHORTCUT_BARS = "shortcut_bars"
STRIDE = "stride"
TRICKS_CHART = "tricks_chart"
TYPES = "types"

# --- Feature maps
PRIVATE_FM_ESTIMATE = "_fm_estimate"
PRIVATE_FM_OVERLAY_LAYER = "_fm_overlay_layer"
PRIVATE_FM_RESULT = "_fm_result"
FM_BLOCK = "fm_block"
FM_BLOCK_STEM = "fm_block_stem"
FM_CHANNELS = "fm_channels"
FM_CONFIRM = "fm_confirm"
FM_FILM = "fm_film"
FM_FILTERS = "fm_filters"
FM_GRID = "fm_grid"
FM_K = "fm_k"
FM_OPACITY = "fm_opacity"
FM_OVERLAY = "fm_overlay"
FM_OVERLAY_CHANNEL = "fm_overlay_channel"
FM_PREP = "fm_prep"
FM_RANK = "fm_rank"
FM_SCALE = "fm_scale"
FM_TAB = "fm_tab"  # the open tab of Feature maps (its label)
FM_STAGE = "fm_stage"
FM_STATS_CSV = "fm_stats_csv"
FM_STREAM = "fm_stream"
FM_STREAM_CSV = "fm_stream_csv"

# --- Predictions & attributions
PRIVATE_ATTR_FILM = "_attr_film"
PRIVATE_ATTR_PRED = "_attr_pred"
PRIVATE_ATTR_RESULTS = "_attr_results"
PRIVATE_ATTR_SANITY = "_attr_sanity"
PRIVATE_ATTR_TRUST = "_attr_trust"
ATTR_FILM = "attr_film"
ATTR_TAB = "attr_tab"  # the open tab of Predictions & attributions (its label)
ATTR_KNOCKOUT = "attr_knockout"
ATTR_SANITY = "attr_sanity"
ATTR_TOP5 = "attr_top5"
ATTR_TRUST = "attr_trust"
ATTR_VIEW = "attr_view"
COLORMAP = "colormap"
DEVICE = "device"
DL_HTML = "dl_html"
DL_NPY = "dl_npy"  # + "_" + a method's key: its raw map
DL_PNG = "dl_png"
FAST_MODE = "fast_mode"
FILM_METHOD = "film_method"
KNOCKOUT = "knockout"
METHODS = "methods"
OPACITY = "opacity"
RUN_ATTR = "run_attr"
RUN_FILM = "run_film"
RUN_SANITY = "run_sanity"
RUN_TRUST = "run_trust"
SANITY_FROM = "sanity_from"
SANITY_METHOD = "sanity_method"
TARGET_CLASS = "target_class"
TRUST_STEPS = "trust_steps"


def method_option(method: str, option: str) -> str:
    """The widget key of one option of an attribution method, from the registry's short names
    (``MethodSpec.short``, ``Option.short``): ``ig_steps``, ``ig_baseline``, ``sg_samples``, ``sg_noise``,
    ``gs_samples``, ``gs_baseline``, ``occ_window``, ``occ_stride``, ``occ_baseline``, ``gc_layer``,
    ``ggc_layer``, ``dl_baseline`` and each CAM's layer (``gcpp_layer``, ``lc_layer``, ``sc_layer``, ...)."""
    return f"{method}_{option}"


# --- Degradation lab
LAB_ARCH = "lab_arch"
LAB_BATCH = "lab_batch"
LAB_DATASET = "lab_dataset"
LAB_DEPTH = "lab_depth"
LAB_DOWNLOAD = "lab_download"  # + "_" + model name: one download button per trained model
LAB_DOWNLOADS = "lab_downloads"
LAB_EPOCHS = "lab_epochs"
LAB_FAMILY = "lab_family"
LAB_FLOW_BATCH = "lab_flow_batch"
LAB_FLOW_CHART = "lab_flow_chart"
LAB_FLOW_SIZE = "lab_flow_size"
LAB_IMAGENET_GO = "lab_imagenet_go"
LAB_LAG_CHART = "lab_lag_chart"
LAB_LINE_CHART = "lab_line_chart"
LAB_LR = "lab_lr"
LAB_MODEL_SELECTED = "lab_model_selected"  # the image pages' model choice, kept across pages
LAB_MODEL_SOURCE = "lab_model_source"  # the image pages' "Model" radio (explorer/ui/lab_models.py)
LAB_MODEL_UPLOAD = "lab_model_upload"
LAB_OPEN = "lab_open"  # + "_" + model name: one "Open on Feature maps" button per trained model
LAB_PAIR_DEPTH = "lab_pair_depth"
LAB_POINTS = "lab_points"
LAB_PRESET = "lab_preset"
LAB_RACE = "lab_race"
LAB_RACE_CHART = "lab_race_chart"
LAB_RACE_SETUP = "lab_race_setup"
LAB_RESPONSES = "lab_responses"  # (race, its Fig. 7 frame): measured once per finished race
LAB_RESPONSES_AFTER = "lab_responses_after"
LAB_RESPONSES_INIT = "lab_responses_init"
LAB_ROOT = "lab_root"
LAB_SEED = "lab_seed"
LAB_SIZE = "lab_size"
LAB_START = "lab_start"
LAB_STOP = "lab_stop"
LAB_SWEEP = "lab_sweep"
LAB_SWEEP_CORR = "lab_sweep_corr"
LAB_SWEEP_CSV = "lab_sweep_csv"
LAB_SWEEP_RATIO = "lab_sweep_ratio"
LAB_SWEEP_RESULT = "lab_sweep_result"
LAB_TRAIN_IMAGES = "lab_train_images"
PRIVATE_LAB_IMAGE_PREP = "_lab_image_prep"  # (key, Preprocessed) of the last lab-model input
PRIVATE_LAB_UPLOAD_DONE = "_lab_upload_done"  # file_id of the last lab model upload opened

# --- Why it works (views/why.py)
WHY_TAB = "why_tab"  # the open tab of Why it works (its label)
WHY_SOURCE = "why_source"  # which networks: twins trained on the page, the lab race's twins, the sidebar's model
WHY_DEPTH = "why_depth"  # the twins' CIFAR depth
WHY_EPOCHS = "why_epochs"
WHY_SIZE = "why_size"  # the twins' image size (px)
WHY_LR = "why_lr"
WHY_SEED = "why_seed"
WHY_TRAIN_IMAGES = "why_train_images"  # the twins' training images (0: all of them)
WHY_TRAIN = "why_train"  # button: train the twins
WHY_ROOT = "why_root"  # the local folder with CIFAR-10 (the sidebar's checkpoint)
WHY_DOWNLOAD = "why_download"  # button: download CIFAR-10 into it
WHY_IMAGES = "why_images"  # training images per loss evaluation
WHY_GRID = "why_grid"  # the landscape's grid: 11 (preview) or 21 (refined)
WHY_VIEW = "why_view"  # contour or surface
WHY_RUN_LANDSCAPE = "why_run_landscape"
WHY_RUN_LINES = "why_run_lines"
WHY_DRAWS = "why_draws"  # random sets per k in the lesion study
WHY_RUN_LESION = "why_run_lesion"
WHY_RUN_PATHS = "why_run_paths"
WHY_BRANCH_ON = "why_branch_on"  # the twins (on a test digit) or the sidebar's model (on a photograph)
WHY_DIGIT = "why_digit"  # the test digit of the branch strip
WHY_ID_DEPTH = "why_id_depth"
WHY_ID_LAYOUT = "why_id_layout"
WHY_ID_TRAIN = "why_id_train"  # button: race the original and pre-activation twins
WHY_FIG = "why_fig"  # + "_" + a figure's name: the plotly charts of the page
WHY_CSV = "why_csv"  # + "_" + a table's name: its download button

# --- Frame (app.py: links to an exact view, projector mode; explorer/ui/url_state.py, projector.py)
RETRY = "retry"  # + "_" + where: the "Try again" button after a server error (explorer/ui/page.py)
PRESENT = "present"  # projector mode: large type, captions trimmed, sidebar collapsed (?present=1)
FRAGMENT_LINK = "frag_copy_link"  # st.fragment keys: the sidebar's link box, rerun with a page fragment
FRAGMENT_ATTR_PANELS = "frag_attr_panels"
FRAGMENT_FM_CHANNELS = "frag_fm_channels"
FRAGMENT_FM_OVERLAY = "frag_fm_overlay"
PRIVATE_URL_APPLIED = "_url_applied"  # the query string last applied or published in this session
PRIVATE_URL_IGNORED = "_url_ignored"  # what the last applied link could not use: [(key, value, reason)]
PRIVATE_URL_PAGE = "_url_page"  # the page the last run showed (a page switch clears the query)

# --- Lesson (views/lesson.py)
LESSON_ANSWER = "lesson_answer"  # + "_" + step number: the "predict, then reveal" radio of that step
LESSON_FIG = "lesson_fig"  # + "_" + a figure's name: the plotly charts of the lesson
LESSON_NEXT = "lesson_next"
LESSON_PREVIOUS = "lesson_previous"
LESSON_REVEAL = "lesson_reveal"  # + "_" + step number
LESSON_STEP = "lesson_step"  # 1..10, also ?lesson_step=N in the URL
PRIVATE_LESSON_REVEALED = "_lesson_revealed"  # the step numbers whose answer is shown
PRIVATE_LESSON_URL_READ = "_lesson_url_read"  # ?lesson_step was read once this session
