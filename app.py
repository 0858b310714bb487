"""ResNet Explorer — the frame: page config, the shared sidebar, navigation. No logic lives here."""

import streamlit as st

from explorer.ui import choices

st.set_page_config(page_title="ResNet Explorer", page_icon="🧱", layout="wide")
page = st.navigation(
    [
        st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("views/architecture.py", title="Architecture", icon=":material/account_tree:"),
        st.Page("views/blocks.py", title="Blocks & shortcuts", icon=":material/call_split:"),
        st.Page("views/feature_maps.py", title="Feature maps", icon=":material/grid_view:"),
        st.Page("views/attributions.py", title="Predictions & attributions", icon=":material/troubleshoot:"),
        st.Page("views/lab.py", title="Degradation lab", icon=":material/science:"),
    ]
)
choices.sidebar()  # after st.navigation, so the widgets belong to the page run and keep their state
page.run()
