"""The Judge tab: blind judgements of the two generators by eye, and their tally for the About tab.

Pairwise (the default): both generators draw one fresh random seed (the same z, truncation 1),
the two faces appear left and right at random with no names, the visitor picks the better one
or "can't tell", the next pair appears at once, and a line below says which side was which.
Real or generated (HYPE∞, Zhou et al. 2019), only when the app was started with `--real-faces`:
one face at a time — a real face half of the time, else a GAN or a WGAN-GP sample (a quarter
each) — and the visitor says "real" or "generated". Keys: ← / → / space, R / G.

    judge = Judge(slots, store, key, real=RealFaces.open("data/test.tar"), rate=RateLimit(30))
    left_png, right_png, token = judge.pair()
    vote = judge.vote(token, "left", session="…")      # demo.votes.VoteError when refused

Public endpoints (docs/demo.md): /judge_pair, /judge_real_pair and /judge_vote. Storage, tokens
and statistics are demo.votes; this module draws the faces and lays out the tab.
"""
from __future__ import annotations

import hashlib
import math
import random
import sys
import threading
from types import SimpleNamespace

import gradio as gr
import numpy as np
import torch

from demo.core import MAX_SEED, SCALE, Slot, draw, seed_latents, upscale
from demo.tabs import PRIVATE
from demo.votes import (DB_FILE, MODELS, HubSync, RateLimit, SetupError, Tally, Ticket, Tokens, Vote, VoteError,
                        VoteStore, check_choice, load_key, prepare_dir, session_id, votes_needed, wilson)

MODES = ("Which face is better?", "Real or generated?")
REAL_SHARE = 0.5  # share of real faces in real-or-generated mode; the rest split evenly between the models
API_PAIR = ("A fresh blind pair: both generators draw one new random seed; returns the left and the right face "
            "(320×320 PNG, sides at random, no names) and the token to vote on them with /judge_vote.")
API_REAL = ("One face for real-or-generated judging (only when the app has --real-faces): a real face, a GAN or a "
            "WGAN-GP sample at random; returns the face (320×320 PNG) and its token for /judge_vote.")
KEYS_JS = """
() => {
  // Judge tab shortcuts: a key clicks the button it names, only while that button is on screen
  const keys = {ArrowLeft: "judge-left-btn", ArrowRight: "judge-right-btn", " ": "judge-tie-btn",
                r: "judge-real-btn", g: "judge-generated-btn"};
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;  // typing in a text field is typing, not voting
    if (t && (t.isContentEditable || /^(TEXTAREA|SELECT)$/.test(t.tagName) ||
              (t.tagName === "INPUT" && !/^(radio|checkbox|button)$/.test(t.type)))) return;
    const id = keys[e.key.length === 1 ? e.key.toLowerCase() : e.key];
    const button = id && document.getElementById(id);
    if (!button || button.offsetParent === null) return;
    e.preventDefault();  // no page scroll on space or the arrows
    if (t && /^(BUTTON|INPUT)$/.test(t.tagName)) t.blur();  // else space would also press the focused one
    button.click();
  });
}
"""


def fingerprint(slots: list[Slot]) -> str:
    """12 hex digits naming the two generators' weights: votes on other weights are tallied apart."""
    h = hashlib.sha256()
    for s in slots:
        h.update(s.key.encode())
        if s.generator is None:
            h.update(b"\0none")
            continue
        for name, t in s.generator.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


class RealFaces:
    """The faces of a folder, .zip or .tar, decoded one at a time like the training data
    (RGB, resize, centre crop to the generators' 64×64), so size and crop give nothing away."""

    def __init__(self, source, size: int = 64):
        self.source, self.size = source, size
        self.names = [e[0] for e in source.entries]
        self._lock = threading.Lock()  # a tar or zip member is read through one shared file handle

    @classmethod
    def open(cls, path) -> RealFaces:
        from animegan.data import DataError, open_image_source  # torchvision: only when real faces are asked for
        try:
            return cls(open_image_source(path))
        except DataError as e:
            raise SetupError(f"--real-faces: {e}") from None

    def __len__(self) -> int:
        return len(self.names)

    def face(self, index: int) -> np.ndarray:
        """64×64×3 uint8; raises on an unreadable file (the caller draws another)."""
        from animegan.data import decode_image
        with self._lock:
            raw = self.source.read(self.names[index])
        return decode_image(raw, self.size).permute(1, 2, 0).numpy()


class Judge:
    """Draws blind pairs and real-or-generated items, and turns votes into stored rows."""

    def __init__(self, slots: list[Slot], store: VoteStore, key: bytes, real: RealFaces | None = None,
                 rate: RateLimit | None = None, sync=None, ttl: float | None = None, rng: random.Random | None = None):
        self.slots, self.store, self.real, self.sync = slots, store, real, sync
        self.by_key = {s.key: s for s in slots}
        self.titles = {s.key: s.title for s in slots} | {"real": "real faces"}
        self.key = key
        self.tokens = Tokens(key) if ttl is None else Tokens(key, ttl)
        self.rate = rate or RateLimit(30)
        self.models = fingerprint(slots)
        self._rng = rng or random.SystemRandom()  # sides and seeds nobody can predict

    # ---- drawing ----------------------------------------------------------------------------

    def _need_models(self) -> None:
        missing = [s.title for s in self.slots if s.generator is None]
        if missing:
            raise gr.Error(f"Judging needs both generators; {', '.join(missing)} is not loaded on this server.")

    def _face(self, key: str, seed: int) -> np.ndarray:
        slot = self.by_key[key]
        return upscale(draw(slot, seed_latents(slot, [seed], 1.0))[0], SCALE)

    def pair(self):
        """Left face, right face (320×320 uint8) and the token that names them."""
        self._need_models()
        seed = self._rng.randrange(MAX_SEED + 1)
        left, right = self._rng.sample(MODELS, 2)
        token = self.tokens.issue(Ticket.pairwise(seed, left, right, self.models))
        return self._face(left, seed), self._face(right, seed), token

    def real_item(self):
        """One face (320×320 uint8) for real-or-generated judging, and its token."""
        if self.real is None:
            raise gr.Error("Real-or-generated judging needs real faces: start the app with --real-faces FOLDER.")
        self._need_models()
        r = self._rng.random()
        if r >= REAL_SHARE:
            source = MODELS[int(r >= REAL_SHARE + (1 - REAL_SHARE) / 2)]
            seed = self._rng.randrange(MAX_SEED + 1)
            token = self.tokens.issue(Ticket.real(source, seed, self.models))
            return self._face(source, seed), token
        for _ in range(10):  # an unreadable file: draw another
            index = self._rng.randrange(len(self.real))
            try:
                img = self.real.face(index)
            except Exception as e:
                print(f"warning: real face {self.real.names[index]} unreadable: {e}", file=sys.stderr)
                continue
            token = self.tokens.issue(Ticket.real("real", index, self.models, self.real.names[index]))
            return upscale(img, SCALE), token
        raise gr.Error("The real faces on this server could not be read; see the server's log.")

    # ---- votes ------------------------------------------------------------------------------

    def vote(self, token, choice, session: str) -> Vote:
        """Store one vote. VoteError (nothing stored) for a missing, forged, expired or used token,
        an unknown choice, or a session over the rate limit."""
        ticket = self.tokens.open(token)
        choice = check_choice(ticket.mode, choice)
        sid = session_id(self.key, session)
        wait = self.rate.take(sid)
        if wait > 0:
            raise VoteError("rate", f"Too many votes: at most {self.rate.limit} a minute per visitor. Nothing was "
                                    f"stored; try again in {math.ceil(wait)} s.")
        try:
            vote = self.store.record(ticket, choice, sid)
        except BaseException:
            self.rate.undo(sid)
            raise
        if self.sync is not None:
            try:
                self.sync.append(vote.row())
            except Exception as e:  # the vote is safe in SQLite; only the Hub copy misses this row
                print(f"warning: vote {vote.id} not copied for the Hub: {e}", file=sys.stderr)
        return vote

    def reveal(self, vote: Vote) -> str:
        """What the visitor just judged, in words."""
        t = vote.ticket
        if t.mode == "pairwise":
            said = "can't tell" if vote.choice == "tie" else f"you chose {self.titles[vote.winner]}"
            return f"Last pair: left was {self.titles[t.shown[0]]}, right was {self.titles[t.shown[1]]} — {said}."
        what = "a real face" if t.shown[0] == "real" else f"generated by the {self.titles[t.shown[0]]}"
        return f"Last face: {what} — you said {vote.choice}."

    def counted(self, session: str) -> str:
        return f"**Your votes: {self.store.count(session_id(self.key, session))}**"

    def api_vote(self, token: str, choice: str, request: gr.Request) -> dict:
        """Vote on a pair or face from /judge_pair or /judge_real_pair. token: the token that came with it;
        choice: "left", "right" or "tie" for a pair, "real" or "generated" for a face. Returns what was
        stored and which side was which; a refused vote (bad, expired or used token, unknown choice, over
        the rate limit) is an error with the reason, and stores nothing."""
        session = _session(request)
        try:
            vote = self.vote(token, choice, session)
        except VoteError as e:
            raise gr.Error(str(e)) from None
        t = vote.ticket
        out = {"accepted": True, "vote_id": vote.id, "mode": t.mode, "choice": vote.choice,
               "your_votes": self.store.count(session_id(self.key, session)), "message": self.reveal(vote)}
        if t.mode == "pairwise":
            out |= {"left": t.shown[0], "right": t.shown[1], "winner": vote.winner}
        else:
            out |= {"source": t.shown[0]}
        return out

    # ---- the tally ----------------------------------------------------------------------------

    def tally(self) -> Tally:
        return self.store.tally(self.models)

    def tally_markdown(self) -> str:
        return tally_markdown(self.tally(), self.titles, self.models)


def open_judge(slots: list[Slot], folder, real_faces=None, votes_repo=None, hf_token=None, rate: int = 30) -> Judge:
    """Everything the Judge tab needs, from the app's flags: the data folder (created if needed),
    its key and database, the real faces, and the Hub copy. SetupError (one line) when any of them
    is unusable; a Hub that cannot be reached only turns the Hub copy off, with one line saying so."""
    folder = prepare_dir(folder)
    key = load_key(folder)
    store = VoteStore(folder / DB_FILE)
    real = RealFaces.open(real_faces) if real_faces else None
    sync = HubSync.configure(votes_repo, hf_token, folder)
    faces = f"; real faces: {len(real)} in {real_faces}" if real else ""
    print(f"votes: {store.count()} so far in {store.path}{faces}", file=sys.stderr)
    if sync is not None:
        try:
            sync.start()
        except Exception as e:  # offline or no permission: the votes stay safe on this disk
            print(f"votes: no Hub copy ({_first_line(e)}); they are kept in {store.path} only", file=sys.stderr)
            sync = None
    if sync is not None:
        try:
            added = sync.restore(store)
            print(f"votes: copying to the Hub dataset {sync.repo_id}; {added} earlier votes restored from it",
                  file=sys.stderr)
        except Exception as e:
            print(f"votes: copying to the Hub dataset {sync.repo_id}; earlier votes not restored ({_first_line(e)})",
                  file=sys.stderr)
    return Judge(slots, store, key, real=real, rate=RateLimit(rate), sync=sync)


def _first_line(e: Exception) -> str:
    return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:200]


def _session(request) -> str:
    """The Gradio session (one per page load or gradio_client.Client), else the client's address."""
    session = getattr(request, "session_hash", None)
    if session:
        return str(session)
    client = getattr(request, "client", None)
    return f"address:{getattr(client, 'host', 'unknown')}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _row(name: str, k: int, n: int, what: str) -> str:
    if n == 0:
        return f"| {name} | – | – | 0 {what} |"
    lo, hi = wilson(k, n)
    return f"| {name} | **{_pct(k / n)}** | {_pct(lo)} – {_pct(hi)} | {k} of {n} {what} |"


def tally_markdown(t: Tally, titles: dict, models: str) -> str:
    """The About tab's panel: win rate and fool rates with 95 % Wilson intervals, and the counts."""
    gan, wgan = titles["gan"], titles["wgan-gp"]
    rows = [_row(f"{wgan} preferred over {gan} (can't tell left out)", t.wgan_wins, t.decisive, "decisive votes")]
    if t.pairwise:
        rows.append(f"| can't tell | {_pct(t.ties / t.pairwise)} | | {t.ties} of {t.pairwise} pairwise votes |")
    for key in MODELS:
        rows.append(_row(f"{titles[key]} fool rate: its faces judged real", t.judged_real[key], t.shown[key],
                         "faces"))
    rows.append(_row("baseline: real faces judged real", t.judged_real["real"], t.shown["real"], "faces"))
    verdict = ""
    if t.decisive:
        lo, hi = wilson(t.wgan_wins, t.decisive)
        verdict = (f"So far **{wgan} looks better** to visitors: the whole interval is above 50 %." if lo > 0.5 else
                   f"So far **{gan} looks better** to visitors: the whole interval is below 50 %." if hi < 0.5 else
                   "So far **no preference** can be told: the interval still holds 50 %.")
    other = (f" ({t.other_models} earlier votes on other weights are not counted.)" if t.other_models else "")
    return "\n".join([
        "### Blind judgements (the Judge tab)",
        f"**{t.total} votes** in all: {t.pairwise} pairwise, {t.real} real-or-generated, on these generators "
        f"(weights `{models}`).{other}",
        "",
        "| | rate | 95 % interval (Wilson) | from |",
        "|---|---:|---|---|",
        *rows,
        "",
        verdict,
        f"Visitors see two unlabelled faces of the same seed, sides at random. To tell a 55 % preference from "
        f"50 % the interval must be about ±5 points wide: roughly {votes_needed(0.05)} decisive votes "
        f"(±10 points: {votes_needed(0.10)}). A fool rate near the real faces' own rate means people cannot "
        "tell that model's faces from real ones.",
    ])


# ---- the tab --------------------------------------------------------------------------------

def judge_tab(j: Judge, lane: dict) -> SimpleNamespace:
    """The Judge tab's layout and events; `lane` is the concurrency group that draws its faces."""
    has_real = j.real is not None
    real_text = ("\n\n**Real or generated?** One face at a time: a real face, or a sample of either model. "
                 "Keys: **R** real, **G** generated." if has_real else "")
    gr.Markdown("### Judge them blind\n**Which face is better?** Both models drew the **same noise**; which one is "
                "on which side is random and hidden until you vote. Pick the better face, or *can't tell* — the next "
                "pair comes at once. Keys: **←** left, **→** right, **space** can't tell." + real_text
                + "\n\nYour votes are anonymous; the tally is on the About tab.")
    mode = gr.Radio(list(MODES), value=MODES[0], label="Mode", visible=has_real, elem_id="judge-mode")
    count = gr.Markdown("**Your votes: 0**", elem_id="judge-count")
    # no labels and no download buttons on the faces: nothing on screen names a model
    face_style = dict(show_label=False, format="png", interactive=False, height=340, buttons=[])
    with gr.Column(visible=True) as pair_box:
        with gr.Row():
            left = gr.Image(label="Left face", elem_id="judge-left", **face_style)
            right = gr.Image(label="Right face", elem_id="judge-right", **face_style)
        with gr.Row():
            b_left = gr.Button("← Left is better", elem_id="judge-left-btn", variant="primary")
            b_tie = gr.Button("Can't tell (space)", elem_id="judge-tie-btn")
            b_right = gr.Button("Right is better →", elem_id="judge-right-btn", variant="primary")
        skip = gr.Button("Skip this pair", size="sm", elem_id="judge-skip")
    with gr.Column(visible=False) as real_box:
        face = gr.Image(label="Face", elem_id="judge-face", **face_style)
        with gr.Row():
            b_real = gr.Button("Real (R)", elem_id="judge-real-btn", variant="primary")
            b_gen = gr.Button("Generated (G)", elem_id="judge-generated-btn", variant="primary")
        skip_real = gr.Button("Skip this face", size="sm", elem_id="judge-skip-real")
    status = gr.Markdown("", elem_id="judge-status")
    token = gr.Textbox(visible="hidden", label="Pair token", elem_id="judge-token")
    real_token = gr.Textbox(visible="hidden", label="Face token", elem_id="judge-real-token")

    skip.click(j.pair, None, [left, right, token], api_name="judge_pair", api_description=API_PAIR, **lane)
    skip_real.click(j.real_item, None, [face, real_token], api_name="judge_real_pair", api_description=API_REAL,
                    **lane)
    gr.api(j.api_vote, api_name="judge_vote", concurrency_id="votes", concurrency_limit=4)

    def voting(choice: str, draw_next, shown: int):
        """The click handler of one choice: (status, count, *next item); the next item comes at once,
        except after a refusal for the rate limit, which keeps the item on screen to vote on later."""
        def handler(tok: str, request: gr.Request):
            session = _session(request)
            try:
                message = j.reveal(j.vote(tok, choice, session))
            except VoteError as e:
                if e.reason == "rate":
                    return (f"⚠️ {e}", gr.skip(), *[gr.skip()] * shown)
                # no item on screen yet (a click before the first one arrived): just draw one
                message = "" if e.reason == "missing" else f"⚠️ {e} Here is a new {'pair' if shown == 3 else 'face'}."
            return (message, j.counted(session), *draw_next())
        return handler

    for button, choice in ((b_left, "left"), (b_right, "right"), (b_tie, "tie")):
        button.click(voting(choice, j.pair, 3), token, [status, count, left, right, token], **PRIVATE, **lane)
    for button, choice in ((b_real, "real"), (b_gen, "generated")):
        button.click(voting(choice, j.real_item, 2), real_token, [status, count, face, real_token], **PRIVATE, **lane)

    def start(which, tok, real_tok, request: gr.Request):
        """Show the chosen mode; draw its first item if it has none yet."""
        real = which == MODES[1] and has_real
        out = [gr.Column(visible=not real), gr.Column(visible=real), j.counted(_session(request))]
        if real:
            return out + [gr.skip()] * 3 + (list(j.real_item()) if not real_tok else [gr.skip()] * 2)
        return out + (list(j.pair()) if not tok else [gr.skip()] * 3) + [gr.skip()] * 2

    start_io = dict(fn=start, inputs=[mode, token, real_token],
                    outputs=[pair_box, real_box, count, left, right, token, face, real_token], **PRIVATE)
    mode.change(**start_io, **lane)

    def wire(blocks: gr.Blocks, tab: gr.Tab, about: gr.Tab, tally: gr.Markdown) -> None:
        """Draw the first item when the Judge tab opens (not for every page view), refresh the About
        tab's tally when it opens, and do either at page load when the link names that tab."""
        tab.select(**start_io, **lane)
        about.select(j.tally_markdown, None, tally, queue=False, **PRIVATE)

        def linked(which, tok, real_tok, request: gr.Request):
            opened = dict(getattr(request, "query_params", None) or {}).get("tab")
            skip = [gr.skip()] * len(start_io["outputs"])
            first = start(which, tok, real_tok, request) if opened == "judge" else skip
            return [*first, j.tally_markdown() if opened == "about" else gr.skip()]
        blocks.load(linked, start_io["inputs"], [*start_io["outputs"], tally], queue=False, **PRIVATE)

    return SimpleNamespace(wire=wire, token=token, real_token=real_token)
