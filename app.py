"""ResNet Explorer — the frame: page config, the shared sidebar, navigation. No logic lives here."""

import streamlit as st

from explorer.ui import choices

st.set_page_config(page_title="ResNet Explorer", page_icon="🧱", layout="wide")
page = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("pages/architecture.py", title="Architecture", icon="📐"),
        st.Page("pages/blocks.py", title="Blocks & shortcuts", icon="🔀"),
        st.Page("pages/feature_maps.py", title="Feature maps", icon="🖼️"),
        st.Page("pages/attributions.py", title="Predictions & attributions", icon="🔍"),
        st.Page("pages/lab.py", title="Degradation lab", icon="🧪"),
    ]
)
choices.sidebar()  # after st.navigation, so the widgets belong to the page run and keep their state
page.run()
