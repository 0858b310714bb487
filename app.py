"""ResNet Explorer — the frame: page config, the shared sidebar, navigation. No logic lives here.

Order matters: the link's values are restored before the page config (projector mode collapses the sidebar),
the sidebar and the page; the current view is published to the URL (and the "Copy link" box) after the page.
"""

import streamlit as st

from explorer.ui import choices, projector, url_state

page = st.navigation(
    [
        st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("views/lesson.py", title="Lesson: ResNet in ten steps", icon=":material/school:"),
        st.Page("views/architecture.py", title="Architecture", icon=":material/account_tree:"),
        st.Page("views/blocks.py", title="Blocks & shortcuts", icon=":material/call_split:"),
        st.Page("views/feature_maps.py", title="Feature maps", icon=":material/grid_view:"),
        st.Page("views/attributions.py", title="Predictions & attributions", icon=":material/troubleshoot:"),
        st.Page("views/lab.py", title="Degradation lab", icon=":material/science:"),
    ]
)
url_state.restore(page.url_path)
st.set_page_config(page_title="ResNet Explorer", page_icon=":material/layers:", layout="wide",
                   initial_sidebar_state=projector.sidebar_state())
projector.style()
url_state.notice()
choices.sidebar()  # after st.navigation, so the widgets belong to the page run and keep their state
with st.sidebar:
    projector.toggle()
    link_place = st.container()
try:
    page.run()
finally:
    url_state.keep(page.url_path)
    with link_place:
        url_state.link_box(page.url_path)
