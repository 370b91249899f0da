"""The Gradio demo's logic (loading, input checks, drawing); app.py is its page."""
