"""The Gradio demo's logic; app.py is its page.

core (slots, input checks, drawing) → directions (principal directions per generator) →
endpoints (the functions behind every endpoint) → tabs, explore, links (the page's parts);
metrics (the About tab's table), files (downloads), deploy (`python -m demo.deploy`).
It imports animegan (checkpoint, sampling, models) and eval.report.METRICS; neither imports it.
"""
