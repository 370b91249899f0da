"""Deploy the demo to a Hugging Face Space: build the exact folder the Space receives, then upload it.

    python -m demo.deploy OWNER/SPACE --dry-run             # list the files and sizes, upload nothing
    python -m demo.deploy OWNER/SPACE --dry-run --out DIR   # … and keep the built folder in DIR
    python -m demo.deploy OWNER/SPACE                       # build and upload (token: `hf auth login` or HF_TOKEN)

The folder holds app.py, every module of this repository that app.py imports (found by
following its import statements), requirements.txt, LICENSE, the two generator folders, the
About tab's figure and a Space card (README.md) whose `sdk_version` is the gradio pin of
requirements.txt: nothing else, so no data, runs or reports. `HfApi.upload_folder` sends it as
one commit and stores files over 10 MB (the two 14 MB model.safetensors) in the Hub's large-file
storage, which a plain `git push` to a Space would reject.
"""
from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATORS = ("checkpoints/gan", "checkpoints/wgan-gp")
FIGURES = ("docs/figures/fd_vs_time.png",)  # the About tab's figure (demo.metrics.FD_FIGURE; a test ties them)
PLAIN_GIT_LIMIT = 10 * 2**20  # larger files must go through the Hub's large-file storage (upload_folder does)
HUB_FILE_LIMIT = 50 * 2**30   # the Hub's limit for one file
CARD = """---
title: GAN vs WGAN-GP on anime faces
emoji: 🎨
colorFrom: pink
colorTo: indigo
sdk: gradio
sdk_version: {gradio}
python_version: "3.11"
app_file: app.py
pinned: false
license: mit
short_description: Same noise, two objectives, side by side
tags:
  - gan
  - wgan-gp
  - anime
  - image-generation
---

# GAN vs WGAN-GP on anime faces

Two 64×64 DCGAN-style generators, one trained as a plain GAN and one as a WGAN-GP, draw the same
latent z side by side: compare seeds, interpolate between them, steer each model along its own
principal directions, and read their evaluation. Built from the animegan repository
(`python -m demo.deploy`); its `docs/demo.md` describes the demo and its API.
"""


def gradio_pin(requirements: str) -> str:
    """The version in requirements.txt's `gradio==X` line."""
    m = re.search(r"^gradio==([^\s;#]+)", requirements, re.M)
    if not m:
        raise SystemExit("error: requirements.txt has no `gradio==VERSION` pin, which a Space's sdk_version needs")
    return m.group(1)


def _module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def local_modules(root: Path = ROOT, entry: str = "app.py") -> list[Path]:
    """`entry` and every module of `root` it imports, directly or through others (packages' __init__ too)."""
    seen, todo = set(), [root / entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
        names = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolved against this module's package
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                names += [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a package's __init__ runs before its modules
                found = _module_file(root, ".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return sorted(seen)


def space_files(root: Path = ROOT) -> dict[str, Path]:
    """Path inside the Space → file here, for everything but the generated README.md."""
    files = {p.relative_to(root).as_posix(): p for p in local_modules(root)}
    files.update({name: root / name for name in ("requirements.txt", "LICENSE") if (root / name).is_file()})
    for folder in GENERATORS:
        files.update({p.relative_to(root).as_posix(): p for p in sorted((root / folder).glob("*")) if p.is_file()})
    files.update({name: root / name for name in FIGURES if (root / name).is_file()})
    return files


def build(out: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """Write the Space's folder into `out` (new or empty); returns (path, bytes) per file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: {out} is a file; give a new folder to --out")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} is not empty; give a new folder to --out")
    for name, src in space_files(root).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out / name)
    (out / "README.md").write_text(CARD.format(gradio=gradio_pin((root / "requirements.txt").read_text())))
    listing = sorted((p.relative_to(out).as_posix(), p.stat().st_size) for p in out.rglob("*") if p.is_file())
    too_big = [name for name, size in listing if size > HUB_FILE_LIMIT]
    if too_big:
        raise SystemExit(f"error: over the Hub's {HUB_FILE_LIMIT >> 30} GB file limit: {', '.join(too_big)}")
    return listing


def upload(folder: Path, repo_id: str, files: list[str]) -> str:
    """Create the Space if needed and make its files exactly `files`, in one commit."""
    from huggingface_hub import HfApi
    api = HfApi()
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=str(folder), allow_patterns=files,
                             delete_patterns="*", commit_message="Deploy the animegan demo")
    return str(info.commit_url)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Build the folder a Hugging Face Space receives and upload it.")
    p.add_argument("space", help="the Space's repo id, OWNER/NAME")
    p.add_argument("--dry-run", action="store_true", help="list the files and their sizes; upload nothing")
    p.add_argument("--out", help="build the folder here and keep it (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.space.count("/") != 1 or not all(args.space.split("/")):
        raise SystemExit(f"error: {args.space!r} is not a Space id of the form OWNER/NAME")
    with tempfile.TemporaryDirectory(prefix="space-") as tmp:
        folder = Path(args.out) if args.out else Path(tmp)
        listing = build(folder)
        for name, size in listing:
            note = "  (large-file storage)" if size > PLAIN_GIT_LIMIT else ""
            print(f"{size / 2**20:9.2f} MB  {name}{note}")
        print(f"{sum(s for _, s in listing) / 2**20:9.2f} MB  in {len(listing)} files"
              + (f", built in {folder}" if args.out else ""))
        if args.dry_run:
            print(f"dry run: nothing uploaded to spaces/{args.space}")
            return 0
        try:
            url = upload(folder, args.space, [name for name, _ in listing])
        except Exception as e:  # offline, no token, no permission: one line, the Hub's own reason
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            print(f"error: nothing uploaded to spaces/{args.space}: {reason} (an upload needs the Hugging Face Hub "
                  "online and a token with write access: `hf auth login` or HF_TOKEN)", file=sys.stderr)
            return 1
    print(f"uploaded: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
