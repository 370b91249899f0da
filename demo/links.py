"""Page state in the URL: `?tab=explore&seed=1234&trunc=0.8&offsets=1.5,0,0,0,-2,0`.

    state, problems = parse_query({"seed": "1234", "trunc": "0.8", "tab": "compare"})
    url = page_link("http://127.0.0.1:7860/", "explore", 1234, 0.8, [1.5, 0, 0, 0, -2, 0])

Every value goes through the same checks as the endpoints; a bad one is dropped with a
one-line reason, so a mistyped link still opens the page.
"""
from __future__ import annotations

import urllib.parse

import gradio as gr

from demo.core import DEFAULT_SEED, check_offsets, check_seed, check_truncation
from demo.tabs import PRIVATE

TABS = ("compare", "interpolate", "explore", "judge", "about")


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def parse_query(params: dict) -> tuple[dict, list[str]]:
    """Query parameters → {"tab", "seed", "trunc", "offsets"} (only those given and valid), problems."""
    state, problems = {}, []
    checks = {"seed": lambda v: check_seed(_number(v)), "trunc": lambda v: check_truncation(_number(v)),
              "offsets": lambda v: check_offsets([_number(x) for x in v.split(",")])}
    for key, check in checks.items():
        if key in params:
            try:
                state[key] = check(params[key])
            except gr.Error as e:
                problems.append(f"{key}={params[key]!r} ignored: {e.message}")
    tab = params.get("tab")
    if tab is not None:
        if tab in TABS:
            state["tab"] = tab
        else:
            problems.append(f"tab={tab!r} ignored: choose one of {', '.join(TABS)}.")
    return state, problems


def page_link(base: str, tab: str, seed, truncation, offsets) -> str:
    """A link that reopens this view: the tab, and for Compare/Explore the seed and truncation
    (and for Explore the slider offsets). Values that do not pass the checks are left out."""
    query = {"tab": tab}
    if tab in ("compare", "explore"):
        for key, value, check in (("seed", seed, check_seed), ("trunc", truncation, check_truncation)):
            try:
                query[key] = f"{check(value):g}" if key == "trunc" else str(check(value))
            except gr.Error:
                pass
    if tab == "explore":
        try:
            query["offsets"] = ",".join(f"{o:g}" for o in check_offsets(offsets))
        except gr.Error:
            pass
    base = base.split("?")[0].split("#")[0]
    return f"{base}?{urllib.parse.urlencode(query, safe=',')}"


def _page_url(request: gr.Request | None) -> str:
    """The page's own address: the browser sends it as the Referer of every event request."""
    headers = getattr(request, "headers", None) or {}
    return headers.get("referer", "")


def restore_and_link(blocks: gr.Blocks, d, tabs: gr.Tabs, tab_blocks: dict, compare, explore, link: gr.Textbox,
                     lane: dict) -> None:
    """Wire the URL state: restore it on page load, keep Compare and Explore on one seed and
    truncation when switching tabs, and refresh the copyable link after every change."""
    tab_now = gr.State("compare")
    zeros = [0.0] * len(explore.sliders)

    def make_link(tab, seed_c, trunc_c, seed_e, trunc_e, offsets, request: gr.Request):
        seed, trunc = (seed_e, trunc_e) if tab == "explore" else (seed_c, trunc_c)
        return page_link(_page_url(request), tab, seed, trunc, offsets)

    link_io = dict(fn=make_link, inputs=[tab_now, compare.seed, compare.trunc, explore.seed, explore.trunc,
                                         explore.offsets], outputs=link, queue=False, **PRIVATE)
    for event in compare.events + explore.events:
        event.then(**link_io)

    explore_out = [explore.seed, explore.trunc, *explore.images, *explore.strips]
    compare_out = [compare.seed, compare.trunc, *compare.images]

    def follow(seed, trunc, seed_here, trunc_here, draw):
        """The other tab's seed and truncation, drawn here, when they differ and are valid."""
        try:
            if (seed, trunc) != (seed_here, trunc_here):
                return (seed, trunc, *draw(seed, trunc))
        except gr.Error:  # the other tab holds a value its own Generate would refuse: keep ours
            pass
        return None

    def to_explore(seed_c, trunc_c, seed_e, trunc_e, offsets):
        got = follow(seed_c, trunc_c, seed_e, trunc_e, lambda s, t: explore.everything(s, t, offsets))
        return ("explore", *(got or [gr.skip()] * len(explore_out)))

    def to_compare(seed_e, trunc_e, seed_c, trunc_c):
        got = follow(seed_e, trunc_e, seed_c, trunc_c, d.compare)
        return ("compare", *(got or [gr.skip()] * len(compare_out)))

    explore_in = [compare.seed, compare.trunc, explore.seed, explore.trunc, explore.offsets]
    tab_blocks["explore"].select(to_explore, explore_in, [tab_now, *explore_out], **PRIVATE, **lane).then(**link_io)
    tab_blocks["compare"].select(to_compare, [explore.seed, explore.trunc, compare.seed, compare.trunc],
                                 [tab_now, *compare_out], **PRIVATE, **lane).then(**link_io)
    for name in [n for n in tab_blocks if n not in ("compare", "explore")]:
        tab_blocks[name].select(lambda n=name: n, None, tab_now, queue=False, **PRIVATE).then(**link_io)

    restored = [tabs, tab_now, compare.seed, compare.trunc, explore.seed, explore.trunc, *explore.sliders,
                explore.offsets, *compare.images, *explore.images, *explore.strips]

    def restore(request: gr.Request):
        state, problems = parse_query(dict(getattr(request, "query_params", None) or {}))
        for p in problems:
            gr.Warning(p)
        tab = state.get("tab")
        out = [gr.Tabs(selected=tab) if tab else gr.skip(), tab or gr.skip()]
        if not {"seed", "trunc", "offsets"} & state.keys():  # nothing to draw: the page already shows the defaults
            return out + [gr.skip()] * (len(restored) - len(out))
        seed, trunc = state.get("seed", DEFAULT_SEED), state.get("trunc", 1.0)
        offsets = state.get("offsets", zeros)
        return (out + [seed, trunc, seed, trunc, *offsets, offsets]
                + list(d.compare(seed, trunc)) + list(explore.everything(seed, trunc, offsets)))

    blocks.load(restore, None, restored, **PRIVATE, **lane).then(**link_io)
