"""The marketers' Streamlit app."""
