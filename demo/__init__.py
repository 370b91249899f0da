"""The Gradio demo's logic; app.py is its page.

core (slots, input checks, drawing) → directions (principal directions per generator) →
endpoints (the functions behind every endpoint) → tabs, explore, judge, links (the page's parts);
metrics (the About tab's table), files (downloads), deploy (`python -m demo.deploy`),
votes (the Judge tab's store, tokens and statistics, `python -m demo.votes`; no gradio, no torch).
It imports animegan (checkpoint, sampling, models, files; data for real faces) and eval.report.METRICS;
neither imports it.
"""
