"""Blind judgements of the two generators: signed tokens, the SQLite store, the statistics, a CLI.

    key = load_key(folder)                           # ANIMEGAN_VOTE_KEY, or folder/vote.key (made once, 0600)
    tokens = Tokens(key)
    token = tokens.issue(Ticket.pairwise(seed=7, left="wgan-gp", right="gan", models="3f2a…"))
    store = VoteStore(folder / DB_FILE)              # WAL, one commit per vote, schema migrated on open
    vote = store.record(tokens.open(token), "left", session="…")   # VoteError: forged, expired, used
    tally = store.tally(models="3f2a…")
    lo, hi = wilson(tally.wgan_wins, tally.decisive)  # 95 % Wilson interval of the WGAN-GP's win rate

    python -m demo.votes summary [--data-dir DIR]
    python -m demo.votes export --out votes.csv [--data-dir DIR]      # or votes.jsonl

A token names one pair (or one real-or-generated face) that the server drew: a random pair id,
its expiry, the generators' fingerprint, and — sealed, so the page cannot read which side is
which — the seed and the side assignment; an HMAC-SHA256 over all of them proves the server
issued it. A vote is stored only for a valid, unexpired token whose pair id has no vote yet; the
database's UNIQUE pair id makes "no vote yet" and the insert one transaction, so a pair cannot
be voted twice even by two requests at the same moment. What was shown comes from the token,
never from the client.

No gradio and no torch here: `demo.judge` draws the faces and builds the tab.
"""
from __future__ import annotations

import argparse
import base64
import collections
import csv
import dataclasses
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from animegan.files import atomic_write

DB_FILE = "votes.sqlite3"
KEY_FILE = "vote.key"
KEY_ENV = "ANIMEGAN_VOTE_KEY"
DATA_ENV = "ANIMEGAN_DATA_DIR"
TOKEN_TTL = 3600.0  # seconds a served pair stays votable: long enough to look, short enough that tokens don't pile up
MODELS = ("gan", "wgan-gp")
SOURCES = ("real", *MODELS)  # what a real-or-generated item can be
PAIR_CHOICES = ("left", "right", "tie")
REAL_CHOICES = ("real", "generated")
Z95 = 1.96  # two-sided 95 % (the conventional rounding of 1.95996…; the docs' arithmetic uses it too)
Z80 = 0.8416  # one-sided 80 % power


class VoteError(ValueError):
    """A refused vote or token: `reason` is a short code, the message one line for people."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class SetupError(Exception):
    """An unusable data folder, key or database: the message is one line that names the path."""


# ---- where the data lives ---------------------------------------------------------------

def default_data_dir() -> Path:
    """The per-user data folder: XDG_DATA_HOME/animegan or ~/.local/share/animegan; on Windows
    %LOCALAPPDATA%\\animegan, on macOS ~/Library/Application Support/animegan."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "animegan"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "animegan"
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # the XDG spec says a relative value is invalid and must be ignored
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share") / "animegan"


def data_dir(flag: str | None = None) -> Path:
    """--data-dir, else $ANIMEGAN_DATA_DIR, else the per-user default."""
    return Path(flag or os.environ.get(DATA_ENV) or default_data_dir()).expanduser()


def prepare_dir(folder: Path) -> Path:
    """Create the data folder if needed; SetupError (one line) when that is impossible."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SetupError(f"data folder {folder} is a file; give a folder to --data-dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SetupError(f"cannot create the data folder {folder}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SetupError(f"data folder {folder} is not writable")
    return folder


def load_key(folder: Path, environ=os.environ) -> bytes:
    """The signing key: $ANIMEGAN_VOTE_KEY (at least 16 characters), else folder/vote.key, created
    once with 32 random bytes and mode 0600. Several processes starting at once agree on one key:
    the file appears complete or not at all (written aside, then hard-linked into place)."""
    text = environ.get(KEY_ENV, "")
    if text:
        if len(text) < 16:
            raise SetupError(f"{KEY_ENV} must be at least 16 characters (got {len(text)})")
        return text.encode()
    path = Path(folder) / KEY_FILE
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=".vote.key.", dir=folder)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # fails if another process linked its key first: then use that one
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    if os.name == "posix" and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # a copied or restored key file: readable by the owner only
    key = path.read_text().strip()
    if len(key) < 32:
        raise SetupError(f"signing key {path} is damaged (under 32 characters); delete it to make a new one")
    return key.encode()


# ---- tokens -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ticket:
    """One served item as the token carries it.

    pairwise: `shown` = (left model, right model), `seed` the shared z seed.
    real:     `shown` = (source,) with source in SOURCES; `seed` the z seed of a generated face or
              the index of a real one, whose file name is `item`."""

    mode: str  # "pairwise" | "real"
    seed: int
    shown: tuple[str, ...]
    models: str  # fingerprint of the two generators' weights, so later weights are tallied apart
    item: str | None = None
    pair_id: str = field(default_factory=lambda: secrets.token_hex(16))
    issued: int = 0
    expires: int = 0

    @classmethod
    def pairwise(cls, seed: int, left: str, right: str, models: str) -> Ticket:
        return cls("pairwise", int(seed), (left, right), models)

    @classmethod
    def real(cls, source: str, seed: int, models: str, item: str | None = None) -> Ticket:
        return cls("real", int(seed), (source,), models, item)

    def check(self) -> Ticket:
        ok = (self.mode == "pairwise" and sorted(self.shown) == sorted(MODELS)) or \
             (self.mode == "real" and len(self.shown) == 1 and self.shown[0] in SOURCES)
        if not ok or not re.fullmatch(r"[0-9a-f]{32}", self.pair_id) or not re.fullmatch(r"[0-9a-z-]{1,40}", self.models):
            raise ValueError(f"not a valid ticket: {self}")
        return self


_TOKEN = re.compile(r"v1\.(p|r)\.([0-9a-f]{32})\.(\d{1,12})\.(\d{1,12})\.([0-9a-z-]{1,40})\.([A-Za-z0-9_-]{2,2000})\."
                    r"([A-Za-z0-9_-]{43})")
_MODE = {"pairwise": "p", "real": "r"}


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Tokens:
    """Issue and open signed tokens (module docstring). The key is split into a MAC key and a
    sealing key, so the two uses never share a key."""

    def __init__(self, key: bytes, ttl: float = TOKEN_TTL):
        if len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        self._mac = hmac.new(key, b"animegan votes: mac", hashlib.sha256).digest()
        self._seal = hmac.new(key, b"animegan votes: seal", hashlib.sha256).digest()
        self.ttl = ttl

    def _stream(self, pair_id: str, n: int) -> bytes:
        """n pseudo-random bytes for this pair id (HMAC in counter mode); pair ids never repeat."""
        blocks = (hmac.new(self._seal, bytes.fromhex(pair_id) + i.to_bytes(4, "big"), hashlib.sha256).digest()
                  for i in range(-(-n // 32)))
        return b"".join(blocks)[:n]

    def _mac_of(self, t: Ticket) -> bytes:
        # every field, the secret ones included, in a fixed unambiguous order
        msg = json.dumps(["v1", t.mode, t.pair_id, t.issued, t.expires, t.models, t.seed, list(t.shown), t.item],
                         separators=(",", ":"))
        return hmac.new(self._mac, msg.encode(), hashlib.sha256).digest()

    def issue(self, ticket: Ticket, now: float | None = None) -> str:
        """The token of a freshly drawn ticket (its issue time and expiry are set here)."""
        now = time.time() if now is None else now
        t = Ticket(ticket.mode, ticket.seed, tuple(ticket.shown), ticket.models, ticket.item, ticket.pair_id,
                   int(now), int(now + self.ttl)).check()
        secret = json.dumps([t.seed, list(t.shown), t.item], separators=(",", ":")).encode()
        sealed = bytes(a ^ b for a, b in zip(secret, self._stream(t.pair_id, len(secret))))
        return (f"v1.{_MODE[t.mode]}.{t.pair_id}.{t.issued}.{t.expires}.{t.models}.{_b64(sealed)}."
                f"{_b64(self._mac_of(t))}")

    def open(self, token, now: float | None = None) -> Ticket:
        """The ticket a token names; VoteError when it is missing, malformed, not signed by this
        key, or expired. Whether it was used already is the store's to say."""
        if not isinstance(token, str) or not token.strip():
            raise VoteError("missing", "No token: ask for a pair first (/judge_pair or /judge_real_pair) and "
                                       "send the token that came with it.")
        m = _TOKEN.fullmatch(token.strip())
        forged = VoteError("forged", "This token was not issued by this server (malformed or altered).")
        if not m:
            raise forged
        mode_letter, pair_id, issued, expires, models, sealed, mac = m.groups()
        try:
            raw = _unb64(sealed)
            secret = bytes(a ^ b for a, b in zip(raw, self._stream(pair_id, len(raw))))
            seed, shown, item = json.loads(secret)
            t = Ticket("pairwise" if mode_letter == "p" else "real", int(seed), tuple(shown), models, item, pair_id,
                       int(issued), int(expires)).check()
            given = _unb64(mac)
        except Exception:  # undecodable or unparsable: altered on the way, like a bad MAC
            raise forged from None
        if not hmac.compare_digest(given, self._mac_of(t)):
            raise forged
        now = time.time() if now is None else now
        if now > t.expires:
            raise VoteError("expired", f"This pair expired {_ago(now - t.expires)} ago (a pair can be voted on for "
                                       f"{(t.expires - t.issued) / 60:g} minutes after it is drawn).")
        return t


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def check_choice(mode: str, choice) -> str:
    allowed = PAIR_CHOICES if mode == "pairwise" else REAL_CHOICES
    if not isinstance(choice, str) or choice.strip().lower() not in allowed:
        what = "a pair" if mode == "pairwise" else "a real-or-generated face"
        raise VoteError("choice", f"The choice for {what} must be one of {', '.join(allowed)} (got {choice!r}).")
    return choice.strip().lower()


# ---- the per-session rate limit ------------------------------------------------------------

class RateLimit:
    """At most `limit` accepted votes per `window` seconds per session (a sliding window, in memory).

        rate = RateLimit(30)
        wait = rate.take(session)      # 0: go ahead (counted); else seconds until a vote may go ahead
        rate.undo(session)             # the vote was refused after all: it does not count

    It stops a runaway script or a held-down key, not a determined forger, who can open new
    sessions; the tokens make sure every vote is about a pair the server actually drew."""

    def __init__(self, limit: int, window: float = 60.0, max_sessions: int = 100_000):
        if limit < 1:
            raise ValueError("the vote rate limit must be at least 1")
        self.limit, self.window, self.max_sessions = limit, window, max_sessions
        self._times: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def take(self, session: str, now: float | None = None) -> float:
        """Reserve a vote for `session`: 0 when it may go ahead (the slot is taken), else the seconds
        until it may. Checking and taking are one step, so two votes at once cannot both squeeze in."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._times.get(session)
            if times is None:
                if len(self._times) >= self.max_sessions:
                    # forget sessions idle for a whole window, so memory stays bounded
                    for key in [k for k, t in self._times.items() if not t or now - t[-1] >= self.window]:
                        del self._times[key]
                times = self._times[session] = collections.deque()
            while times and now - times[0] >= self.window:
                times.popleft()
            if len(times) >= self.limit:
                return self.window - (now - times[0])
            times.append(now)
            return 0.0

    def undo(self, session: str) -> None:
        """Give back the slot of a vote that was then refused (nothing stored, nothing counted)."""
        with self._lock:
            times = self._times.get(session)
            if times:
                times.pop()


# ---- the store ----------------------------------------------------------------------------

# Schema versions, in order: MIGRATIONS[i] takes a database from PRAGMA user_version i to i + 1.
# Never edit a released step; add one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE votes (
        id          INTEGER PRIMARY KEY,         -- arrival order
        pair_id     TEXT NOT NULL UNIQUE,        -- one vote per served pair, enforced here
        mode        TEXT NOT NULL CHECK (mode IN ('pairwise', 'real')),
        models      TEXT NOT NULL,               -- fingerprint of the two generators' weights
        seed        INTEGER NOT NULL,            -- z seed (both models), or a real face's index
        left_model  TEXT,                        -- pairwise: which model was on the left …
        right_model TEXT,                        -- … and on the right
        source      TEXT,                        -- real: real | gan | wgan-gp
        item        TEXT,                        -- real: the real face's file name
        choice      TEXT NOT NULL,               -- pairwise: left | right | tie; real: real | generated
        winner      TEXT,                        -- pairwise: gan | wgan-gp, NULL for a tie
        session     TEXT NOT NULL,               -- a keyed hash of the Gradio session
        served_at   REAL NOT NULL,               -- unix seconds
        voted_at    REAL NOT NULL,
        CHECK ((mode = 'pairwise' AND choice IN ('left', 'right', 'tie') AND left_model IS NOT NULL
                AND right_model IS NOT NULL)
            OR (mode = 'real' AND choice IN ('real', 'generated') AND source IS NOT NULL))
    );
    CREATE INDEX votes_session ON votes (session);            -- "your votes" after every vote
    CREATE INDEX votes_models ON votes (models, mode);        -- the tally of the loaded generators
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
COLUMNS = ("id", "pair_id", "mode", "models", "seed", "left_model", "right_model", "source", "item", "choice",
           "winner", "session", "served_at", "voted_at")


@dataclass(frozen=True)
class Vote:
    """A stored vote, as `VoteStore.record` returns it."""

    id: int
    ticket: Ticket
    choice: str
    winner: str | None  # pairwise: the model chosen; None for a tie and in real mode
    session: str
    voted_at: float

    def row(self) -> dict:
        """The vote as one row of COLUMNS (the database's, the export's and the Hub copy's)."""
        t = self.ticket
        pair = t.mode == "pairwise"
        return {"id": self.id, "pair_id": t.pair_id, "mode": t.mode, "models": t.models, "seed": t.seed,
                "left_model": t.shown[0] if pair else None, "right_model": t.shown[1] if pair else None,
                "source": None if pair else t.shown[0], "item": t.item, "choice": self.choice, "winner": self.winner,
                "session": self.session, "served_at": float(t.issued), "voted_at": self.voted_at}


@dataclass
class Tally:
    """Counts for one set of generators (one `models` fingerprint), and how many votes were on others."""

    wgan_wins: int = 0
    gan_wins: int = 0
    ties: int = 0
    shown: dict = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))  # real mode: items per source
    judged_real: dict = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))
    other_models: int = 0

    @property
    def decisive(self) -> int:
        return self.wgan_wins + self.gan_wins

    @property
    def pairwise(self) -> int:
        return self.decisive + self.ties

    @property
    def real(self) -> int:
        return sum(self.shown.values())

    @property
    def total(self) -> int:
        return self.pairwise + self.real


class VoteStore:
    """The votes in one SQLite file: WAL, synchronous=FULL and one transaction per vote, so a
    vote that was acknowledged survives a crash, a `kill -9` or a power cut. Thread-safe."""

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise SetupError(f"no votes database at {self.path} (the app creates it: python app.py --data-dir "
                             f"{self.path.parent})")
        try:
            # autocommit mode: transactions are the explicit BEGIN IMMEDIATE … COMMIT below
            self._con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            mode = self._con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise SetupError(f"{self.path}: SQLite refused WAL mode (journal mode {mode}); is it on a network drive?")
            self._con.execute("PRAGMA synchronous=FULL")  # fsync at every commit: an acknowledged vote is on disk
            self._con.execute("PRAGMA busy_timeout=30000")
            self._lock = threading.Lock()
            self._migrate()
        except sqlite3.Error as e:
            raise SetupError(f"cannot open the votes database {self.path}: {e}") from None

    def _migrate(self) -> None:
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it done
            try:
                version = self._con.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise SetupError(f"{self.path} has schema version {version}, newer than this code's "
                                     f"{SCHEMA_VERSION}: update animegan to read it")
                for step in range(version, SCHEMA_VERSION):
                    for statement in _statements(MIGRATIONS[step]):
                        self._con.execute(statement)
                    self._con.execute(f"PRAGMA user_version = {step + 1}")
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    @property
    def version(self) -> int:
        with self._lock:
            return self._con.execute("PRAGMA user_version").fetchone()[0]

    def record(self, ticket: Ticket, choice: str, session: str, now: float | None = None) -> Vote:
        """Store one vote for an opened ticket; VoteError("used") when its pair already has one."""
        choice = check_choice(ticket.mode, choice)
        winner = None
        if ticket.mode == "pairwise" and choice != "tie":
            winner = ticket.shown[0] if choice == "left" else ticket.shown[1]
        vote = Vote(0, ticket, choice, winner, session, time.time() if now is None else now)
        row = vote.row()
        names = [c for c in COLUMNS if c != "id"]
        with self._lock:
            try:
                self._con.execute("BEGIN IMMEDIATE")
                cur = self._con.execute(f"INSERT INTO votes ({', '.join(names)}) VALUES "
                                        f"({', '.join('?' * len(names))})", [row[c] for c in names])
                self._con.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._con.execute("ROLLBACK")
                raise VoteError("used", "This pair already has a vote; each pair counts once.") from None
            except BaseException:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise
        return dataclasses.replace(vote, id=cur.lastrowid)

    def import_rows(self, rows) -> int:
        """Add exported rows (dicts with COLUMNS) that are not here yet, by pair id; returns how many."""
        names = [c for c in COLUMNS if c != "id"]
        added = 0
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                for r in rows:
                    cur = self._con.execute(f"INSERT OR IGNORE INTO votes ({', '.join(names)}) VALUES "
                                            f"({', '.join('?' * len(names))})", [r.get(c) for c in names])
                    added += cur.rowcount
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return added

    def count(self, session: str | None = None) -> int:
        with self._lock:
            if session is None:
                return self._con.execute("SELECT COUNT(*) FROM votes").fetchone()[0]
            return self._con.execute("SELECT COUNT(*) FROM votes WHERE session = ?", (session,)).fetchone()[0]

    def tally(self, models: str | None = None) -> Tally:
        """Counts of the votes on `models` (None: the most recently voted fingerprint)."""
        with self._lock:
            if models is None:
                last = self._con.execute("SELECT models FROM votes ORDER BY id DESC LIMIT 1").fetchone()
                models = last[0] if last else ""
            groups = self._con.execute(
                "SELECT mode, winner, source, choice, COUNT(*) FROM votes WHERE models = ? "
                "GROUP BY mode, winner, source, choice", (models,)).fetchall()
            other = self._con.execute("SELECT COUNT(*) FROM votes WHERE models != ?", (models,)).fetchone()[0]
        t = Tally(other_models=other)
        for mode, winner, source, choice, n in groups:
            if mode == "pairwise":
                if winner == "wgan-gp":
                    t.wgan_wins += n
                elif winner == "gan":
                    t.gan_wins += n
                else:
                    t.ties += n
            elif source in t.shown:
                t.shown[source] += n
                t.judged_real[source] += n if choice == "real" else 0
        return t

    def fingerprints(self) -> list[tuple[str, int]]:
        """(models, votes) per fingerprint, the most recently voted first."""
        with self._lock:
            return self._con.execute("SELECT models, COUNT(*) FROM votes GROUP BY models "
                                     "ORDER BY MAX(id) DESC").fetchall()

    def rows(self) -> list[dict]:
        with self._lock:
            cur = self._con.execute(f"SELECT {', '.join(COLUMNS)} FROM votes ORDER BY id")
            return [dict(zip(COLUMNS, r)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._con.close()


def _statements(script: str) -> list[str]:
    """A migration script's statements, to run one by one inside the caller's transaction
    (sqlite3's executescript would commit first). Comments (`--` to the end of a line) are dropped."""
    text = "\n".join(line.split("--")[0] for line in script.splitlines())
    out, buf = [], ""
    for piece in text.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):  # a ";" inside a string or trigger body does not end it
            if buf.strip(" \n;"):
                out.append(buf.strip())
            buf = ""
    if buf.strip(" \n;"):
        raise ValueError(f"incomplete SQL statement in a migration: {buf.strip()[:80]}")
    return out


def session_id(key: bytes, session: str) -> str:
    """What the database keeps of a Gradio session: a keyed hash (counts per visitor, nothing else)."""
    return hmac.new(key, b"session:" + session.encode(), hashlib.sha256).hexdigest()[:16]


# ---- statistics (pure) --------------------------------------------------------------------

def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (Wilson 1927): (lo, hi), inside [0, 1] even at
    k = 0 or k = n, where the textbook p ± z·√(p(1−p)/n) collapses to a point. n = 0 gives (0, 1):
    no votes say nothing."""
    if any(isinstance(x, bool) or not isinstance(x, int) for x in (k, n)) or not 0 <= k <= n:
        raise ValueError(f"need whole numbers 0 ≤ k ≤ n (got k={k!r}, n={n!r})")
    if n == 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def votes_needed(margin: float, p: float = 0.5, z: float = Z95) -> int:
    """Decisive votes for a 95 % interval of half-width `margin` around a rate near p:
    n = z²·p(1−p)/margin², so ±5 points at 50 % need 1.96²·0.25/0.05² = 384.2 → 385."""
    if not 0 < margin < 1 or not 0 < p < 1:
        raise ValueError(f"need 0 < margin < 1 and 0 < p < 1 (got margin={margin!r}, p={p!r})")
    return math.ceil(z * z * p * (1 - p) / margin ** 2 - 1e-9)


def votes_to_detect(rate: float, null: float = 0.5, z: float = Z95, z_power: float = Z80) -> int:
    """Decisive votes for a two-sided 5 % test to tell a true `rate` from `null` 80 % of the time:
    n = ((z·√(p₀q₀) + z_β·√(p₁q₁)) / (p₁ − p₀))², e.g. 55 % against 50 % needs 783."""
    if not 0 < rate < 1 or not 0 < null < 1 or rate == null:
        raise ValueError(f"need two different rates in (0, 1) (got {rate!r} and {null!r})")
    n = ((z * math.sqrt(null * (1 - null)) + z_power * math.sqrt(rate * (1 - rate))) / (rate - null)) ** 2
    return math.ceil(n - 1e-9)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _rate(k: int, n: int) -> str:
    if n == 0:
        return "no votes yet"
    lo, hi = wilson(k, n)
    return f"{_pct(k / n)} (95 % CI {_pct(lo)} – {_pct(hi)}; {k} of {n})"


def summary_lines(t: Tally, titles: dict | None = None) -> list[str]:
    """The tally in words, one line each (the CLI prints these; the About tab shows them as a list)."""
    titles = titles or {"gan": "GAN", "wgan-gp": "WGAN-GP", "real": "real faces"}
    lines = [f"Pairwise: {t.pairwise} votes, {t.decisive} decisive, "
             f"{t.ties} can't tell" + (f" ({_pct(t.ties / t.pairwise)})" if t.pairwise else "") + ".",
             f"{titles['wgan-gp']} preferred over {titles['gan']}: {_rate(t.wgan_wins, t.decisive)}."]
    if t.decisive:
        lo, hi = wilson(t.wgan_wins, t.decisive)
        verdict = (f"{titles['wgan-gp']} looks better" if lo > 0.5 else f"{titles['gan']} looks better" if hi < 0.5
                   else "no preference shown yet (the interval holds 50 %)")
        lines.append(f"Verdict at 95 %: {verdict}.")
    lines.append(f"Real or generated: {t.real} votes.")
    for s in MODELS:
        lines.append(f"{titles[s]} fool rate (judged real): {_rate(t.judged_real[s], t.shown[s])}.")
    lines.append(f"Baseline, {titles['real']} judged real: {_rate(t.judged_real['real'], t.shown['real'])}.")
    if t.other_models:
        lines.append(f"Not counted: {t.other_models} votes on other weights of the generators.")
    return lines


# ---- export -------------------------------------------------------------------------------

def export(rows: list[dict], out: Path) -> int:
    """Write rows as CSV or JSONL (by out's extension), atomically; returns the number of rows."""
    suffix = out.suffix.lower()

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if suffix == ".csv":
                w = csv.DictWriter(f, fieldnames=COLUMNS)
                w.writeheader()
                w.writerows(rows)
            else:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write(out, write)
    return len(rows)


# ---- the Hub copy on a Space ----------------------------------------------------------------

@dataclass
class HubSync:
    """Votes copied to a Hugging Face dataset repo, the Spaces way of keeping user data: each process
    appends JSON lines to its own file in `folder`, and huggingface_hub's CommitScheduler uploads
    that folder to `path_in_repo` every `every` minutes (and once more at exit).

        sync = HubSync.configure("OWNER/animegan-votes", os.environ.get("HF_TOKEN"), data_dir)
        sync.start(); sync.append(row)          # under the scheduler's lock, so no upload sees half a line

    `configure` gives None when no repo id is set: nothing is uploaded and nothing is imported."""

    repo_id: str
    token: str
    folder: Path
    path_in_repo: str = "votes"
    every: float = 5.0  # minutes
    file_name: str = field(default_factory=lambda: f"votes-{socket.gethostname()[:40]}-{uuid.uuid4().hex[:8]}.jsonl")
    scheduler: object = None

    @classmethod
    def configure(cls, repo_id: str | None, token: str | None, data_folder: Path) -> HubSync | None:
        if not repo_id:
            return None
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise SetupError(f"--votes-repo must be a dataset repo id OWNER/NAME (got {repo_id!r})")
        if not token:
            raise SetupError(f"--votes-repo {repo_id} needs a Hub token with write access in HF_TOKEN")
        return cls(repo_id, token, Path(data_folder) / "hub")

    @property
    def file(self) -> Path:
        return self.folder / self.file_name

    def scheduler_kwargs(self) -> dict:
        """What CommitScheduler is given: where, what and how often it uploads."""
        return dict(repo_id=self.repo_id, repo_type="dataset", folder_path=self.folder, path_in_repo=self.path_in_repo,
                    every=self.every, private=True, token=self.token, allow_patterns=["*.jsonl"])

    def start(self, scheduler_cls=None) -> None:
        """Create the scheduler (it creates the repo if needed, which needs the Hub)."""
        if scheduler_cls is None:
            from huggingface_hub import CommitScheduler as scheduler_cls
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scheduler = scheduler_cls(**self.scheduler_kwargs())

    def append(self, row: dict) -> None:
        if self.scheduler is None:
            return
        with self.scheduler.lock:
            with open(self.file, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def restore(self, store: VoteStore, download=None) -> int:
        """Import the votes already in the dataset repo (a Space's disk starts empty after a restart);
        returns how many were new here. Rows are matched by pair id, so running it twice adds nothing."""
        if download is None:
            from huggingface_hub import snapshot_download as download
        local = Path(download(repo_id=self.repo_id, repo_type="dataset", token=self.token,
                              allow_patterns=[f"{self.path_in_repo}/*.jsonl"]))
        rows = []
        for path in sorted((local / self.path_in_repo).glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:  # a line cut by an upload mid-write: skip it, keep the rest
                    continue
                if isinstance(r, dict) and r.get("pair_id"):
                    rows.append(r)
        return store.import_rows(rows)


# ---- the command line -----------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo.votes",
                                description="The Judge tab's votes: print the tally or export them.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("summary", "print the tally of the most recently judged generators"),
                       ("export", "write every vote to a .csv or .jsonl file")):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--data-dir", help=f"the app's data folder (default: ${DATA_ENV} or {default_data_dir()})")
        if name == "export":
            s.add_argument("--out", required=True, help="output file, .csv or .jsonl")
    args = p.parse_args(argv)
    try:
        folder = data_dir(args.data_dir)
        if args.command == "export":
            out = Path(args.out)
            if out.suffix.lower() not in (".csv", ".jsonl"):
                raise SetupError(f"--out {out}: the name must end in .csv or .jsonl")
            if out.is_dir():
                raise SetupError(f"--out {out} is a folder; give a file name")
            if not out.parent.is_dir():
                raise SetupError(f"--out {out}: folder {out.parent} does not exist")
        if folder.exists() and not folder.is_dir():
            raise SetupError(f"--data-dir {folder} is a file, not a folder")
        store = VoteStore(folder / DB_FILE, create=False)
        if args.command == "export":
            n = export(store.rows(), out)
            print(f"wrote {n} votes to {out}")
        else:
            prints = store.fingerprints()
            print(f"{store.count()} votes in {store.path}")
            for models, n in prints:
                print(f"\ngenerators {models} ({n} votes):")
                t = store.tally(models)
                t.other_models = 0  # every fingerprint gets its own block here
                print("\n".join("  " + line for line in summary_lines(t)))
        store.close()
    except (SetupError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
