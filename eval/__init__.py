"""animegan's evaluation toolkit: feature spaces, pure metrics, the `python -m eval.fid` CLI.

    python -m eval.fid --ckpt checkpoints/gan --real data/val.tar --n 1500

Modules: features (extractors by name, `extract_features`), cache (on-disk
real-feature cache), diversity (metrics as pure functions of feature matrices),
report (JSON / Markdown / image grids), fid (the CLI).
"""
