"""Pure plotly figure builders, one submodule per topic; none of them calls streamlit."""
