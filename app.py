"""ResNet Explorer — the frame: page config, the shared sidebar, navigation. No logic lives here.

Order matters: the link's values are restored before the page config (projector mode collapses the sidebar),
the sidebar and the page; the current view is published to the URL (and the "Copy link" box) after the page.
"""

import streamlit as st

from explorer.ui import pages, projector, sidebar, url_state

page = st.navigation([st.Page(p.file, title=p.title, icon=p.icon, default=p.default) for p in pages.PAGES])
url_state.restore(page.url_path)
st.set_page_config(page_title="ResNet Explorer", page_icon=":material/layers:", layout="wide",
                   initial_sidebar_state=projector.sidebar_state())
projector.style()
url_state.notice()
sidebar.draw()  # after st.navigation, so the widgets belong to the page run and keep their state
with st.sidebar:
    projector.toggle()
    link_place = st.container()
try:
    page.run()
finally:
    url_state.keep(page.url_path)
    with link_place:
        url_state.link_box(page.url_path)
