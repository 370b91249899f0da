"""animegan's evaluation toolkit: feature spaces, pure metrics, the `python -m eval.fid` CLI.

    python -m eval.fid --ckpt checkpoints/gan --real data/test.tar --train data/train.tar --n 1000

Modules: cache (on-disk real-feature cache; the feature networks themselves live in
`animegan.features`), metrics and memorisation (pure functions of feature matrices), evaluate (the
protocol as one call, `evaluate(...)`), report (JSON / Markdown / pictures, the metric
table METRICS), cli (the command line; `eval.fid` is its entry point).
"""
