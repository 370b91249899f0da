"""Latency and load of the Gradio demo, measured the way users reach it: gradio_client over HTTP.

    python benchmarks/app_latency.py                        # launches app.py on full-size random generators
    python benchmarks/app_latency.py --gan checkpoints/gan --wgan-gp checkpoints/wgan-gp
    python benchmarks/app_latency.py --url http://127.0.0.1:7860/   # an app that is already running
    python benchmarks/app_latency.py --json reports/app_latency.json

Five measurements (targets in brackets):
1. /compare, one client, `--calls` sequential calls: p50 [< 150 ms] and p95;
2. /explore, one client, `--explore-calls` sequential calls with random slider offsets: p50 [< 150 ms];
3. /interpolate with 16 frames, `--interp-calls` calls: p50 [< 1.5 s] and p95;
4. `--clients` clients, half calling /compare and half /explore in a loop for `--duration` s:
   failed requests [0], throughput and latency under load;
5. the Judge tab, `--judge-calls` sequential /judge_pair then /judge_vote (only in an app it launched,
   whose votes go to a temporary folder);
and, for scale, the /compare and /explore functions alone in-process, and the "serving floor":
a Gradio app whose /compare returns two fixed PNGs without any model, through the same client.
Latency is the full round trip of Client.predict: queue, inference, PNG/GIF encoding and the
download of the result files. Random weights cost exactly what trained ones do (same shapes).
Exit status 1 if any request failed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def generators(args, workdir: Path) -> tuple[str, str]:
    """--gan/--wgan-gp, or full-size random generators exported to workdir."""
    gan, wgan = args.gan, args.wgan_gp
    if not (gan and wgan):
        import torch
        from animegan.checkpoint import export_generator
        from animegan.models import Generator
        for i, name in enumerate(("gan", "wgan-gp")):
            torch.manual_seed(i)
            export_generator(Generator(), workdir / name)  # 3.6 M parameters, the shipped size
        gan, wgan = gan or str(workdir / "gan"), wgan or str(workdir / "wgan-gp")
    return gan, wgan


# The serving floor: a Gradio app whose /compare returns two fixed 320×320 PNGs, no model at all.
FLOOR_APP = """
import sys, gradio as gr, numpy as np
img = np.zeros((320, 320, 3), np.uint8)
with gr.Blocks() as demo:
    a, b, out_a, out_b = gr.Number(), gr.Number(), gr.Image(format="png"), gr.Image(format="png")
    gr.Button().click(lambda s, t: (img, img), [a, b], [out_a, out_b], api_name="compare")
demo.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]))
"""


def start_app(args, workdir: Path, gan: str | None, wgan: str | None) -> tuple[subprocess.Popen, str]:
    """Run app.py on a free port (or, without generators, the model-free floor app)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    cmd = ([str(ROOT / "app.py"), "--gan", gan, "--wgan-gp", wgan, "--host", "127.0.0.1", "--port", str(port),
            "--concurrency", str(args.concurrency), "--data-dir", str(workdir / "data"),  # the votes: thrown away
            "--vote-rate", "100000"] if gan else ["-c", FLOOR_APP, str(port)])
    proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=env, stdout=open(workdir / "app.log", "w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise SystemExit(f"error: app did not start; see {workdir / 'app.log'}:\n"
                                 + (workdir / "app.log").read_text()[-2000:])
            time.sleep(0.5)


def summary(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    if ms.size == 0:
        return {"n": 0}
    return {"n": int(ms.size), "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "max_ms": float(ms.max())}


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def random_offsets(rng: random.Random) -> list[float]:
    return [round(rng.uniform(-3, 3), 1) for _ in range(6)]


def in_process(gan: str, wgan: str, n: int, threads: int) -> dict:
    """The /compare and /explore functions themselves (both models, upscale), without Gradio or HTTP:
    what serving adds is the rest."""
    import torch
    from demo.core import load_slot
    from demo.endpoints import Demo
    torch.set_num_threads(threads)
    demo = Demo([load_slot("gan", "GAN", gan, True, "cpu"), load_slot("wgan-gp", "WGAN-GP", wgan, True, "cpu")])
    t = time.perf_counter()
    demo.explore(0, 1.0, [0] * 6)  # the first call finds both models' principal directions
    directions_s = time.perf_counter() - t
    demo.compare(0, 1.0)
    rng = random.Random(0)
    return {"compare": summary(timed(lambda i: demo.compare(1000 + i, 1.0), n)),
            "explore": summary(timed(lambda i: demo.explore(1000 + i, 1.0, random_offsets(rng)), n)),
            "directions_s": directions_s}


def load_test(url: str, clients: int, duration: float) -> dict:
    """`clients` threads, one gradio_client each, until the deadline: even ones call /compare, odd
    ones /explore, with random seeds (and offsets)."""
    from gradio_client import Client
    conns = [Client(url, verbose=False) for _ in range(clients)]
    lat, errors, lock = [], [], threading.Lock()
    per_endpoint = {"/compare": [0, 0], "/explore": [0, 0]}  # ok, failed
    start = threading.Barrier(clients + 1)

    def worker(c, rng, endpoint):
        start.wait()
        while time.perf_counter() < stop:
            t = time.perf_counter()
            extra = [random_offsets(rng)] if endpoint == "/explore" else []
            try:
                c.predict(rng.randrange(2**32), 1.0, *extra, api_name=endpoint)
                with lock:
                    lat.append(time.perf_counter() - t)
                    per_endpoint[endpoint][0] += 1
            except Exception as e:  # every failure counts; keep the first few messages
                with lock:
                    errors.append(f"{endpoint}: {type(e).__name__}: {e}"[:200])
                    per_endpoint[endpoint][1] += 1

    threads = [threading.Thread(target=worker, args=(c, random.Random(i), ("/compare", "/explore")[i % 2]),
                                daemon=True) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    stop = time.perf_counter() + duration
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "duration_s": round(wall, 1), "ok": len(lat), "failed": len(errors),
            "by_endpoint": {k: {"ok": ok, "failed": bad} for k, (ok, bad) in per_endpoint.items()},
            "throughput_rps": len(lat) / wall, "latency": summary(lat), "first_errors": errors[:5]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="benchmark an app that is already running instead of launching one")
    p.add_argument("--gan", help="generator folder or Hub repo id for the launched app (default: random full-size)")
    p.add_argument("--wgan-gp", help="same for the WGAN-GP")
    p.add_argument("--concurrency", type=int, default=2, help="app.py --concurrency for the launched app")
    p.add_argument("--calls", type=int, default=50, help="sequential /compare calls")
    p.add_argument("--explore-calls", type=int, default=50, help="sequential /explore calls")
    p.add_argument("--interp-calls", type=int, default=10, help="sequential /interpolate calls (16 frames)")
    p.add_argument("--clients", type=int, default=20, help="concurrent clients in the load test")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of the load test")
    p.add_argument("--judge-calls", type=int, default=20, help="sequential /judge_pair + /judge_vote rounds")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)

    from gradio_client import Client
    with tempfile.TemporaryDirectory(prefix="app-bench-") as tmp:
        gan, wgan = generators(args, Path(tmp))
        proc, url = (None, args.url) if args.url else start_app(args, Path(tmp), gan, wgan)
        try:
            c = Client(url, verbose=False)
            for i in range(3):  # warm-up: first calls pay for lazy imports and allocator growth
                c.predict(i, 1.0, api_name="/compare")
            c.predict(0, 1, 16, "slerp", api_name="/interpolate")
            for i in range(3):
                c.predict(i, 1.0, [0] * 6, api_name="/explore")
            rng = random.Random(0)
            res = {"url": url if args.url else "launched app.py", "concurrency": None if args.url else args.concurrency,
                   "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores",
                   "load_average": list(os.getloadavg()),
                   "compare": summary(timed(lambda i: c.predict(1000 + i, 1.0, api_name="/compare"), args.calls)),
                   "explore": summary(timed(lambda i: c.predict(1000 + i, 1.0, random_offsets(rng), api_name="/explore"),
                                            args.explore_calls)),
                   "interpolate_16": summary(timed(lambda i: c.predict(i, i + 1, 16, "slerp", api_name="/interpolate"),
                                                   args.interp_calls)),
                   "load": load_test(url, args.clients, args.duration)}
            # votes only into a launched app's throw-away folder, never into a running app's tally
            if proc and "/judge_vote" in c.view_api(print_info=False, return_format="dict")["named_endpoints"]:
                tokens = []
                res["judge_pair"] = summary(timed(lambda i: tokens.append(c.predict(api_name="/judge_pair")[2]),
                                                  args.judge_calls))
                res["judge_vote"] = summary(timed(lambda i: c.predict(tokens[i], "tie", api_name="/judge_vote"),
                                                  args.judge_calls))
            if proc:  # for scale: the function alone (same threads as the app), and Gradio without a model
                res["functions_only"] = in_process(gan, wgan, args.calls,
                                                   max(1, (os.cpu_count() or 1) // args.concurrency))
                proc.terminate()
                proc.wait(10)
                proc, floor_url = start_app(args, Path(tmp), None, None)
                fc = Client(floor_url, verbose=False)
                fc.predict(0, 1.0, api_name="/compare")
                res["compare_serving_floor"] = summary(timed(lambda i: fc.predict(i, 1.0, api_name="/compare"),
                                                             args.calls))
        finally:
            if proc:
                proc.terminate()
                proc.wait(10)

    cmp, exp, itp, load = res["compare"], res["explore"], res["interpolate_16"], res["load"]
    print(f"/compare          n={cmp['n']:3d}  p50 {cmp['p50_ms']:7.1f} ms  p95 {cmp['p95_ms']:7.1f} ms  (target p50 < 150 ms)")
    print(f"/explore          n={exp['n']:3d}  p50 {exp['p50_ms']:7.1f} ms  p95 {exp['p95_ms']:7.1f} ms  (target p50 < 150 ms)")
    print(f"/interpolate (16) n={itp['n']:3d}  p50 {itp['p50_ms']:7.1f} ms  p95 {itp['p95_ms']:7.1f} ms  (target < 1500 ms)")
    by = ", ".join(f"{k} {v['ok']} ok / {v['failed']} failed" for k, v in load["by_endpoint"].items())
    print(f"load: {load['clients']} clients × {load['duration_s']} s: {load['ok']} ok, {load['failed']} failed ({by}), "
          f"{load['throughput_rps']:.1f} req/s, p50 {load['latency'].get('p50_ms', float('nan')):.0f} ms, "
          f"p95 {load['latency'].get('p95_ms', float('nan')):.0f} ms")
    for name in ("judge_pair", "judge_vote"):
        if res.get(name, {}).get("n"):
            print(f"/{name:<16} n={res[name]['n']:3d}  p50 {res[name]['p50_ms']:7.1f} ms  p95 {res[name]['p95_ms']:7.1f} ms")
    if "functions_only" in res:
        fn, fl = res["functions_only"], res["compare_serving_floor"]
        for name in ("compare", "explore"):
            print(f"/{name} function alone, in-process (no Gradio/HTTP): p50 {fn[name]['p50_ms']:.1f} ms, "
                  f"p95 {fn[name]['p95_ms']:.1f} ms")
        print(f"principal directions of both models, found in-process at the first /explore: {fn['directions_s']:.1f} s")
        print(f"serving floor (Gradio app returning two fixed PNGs):  p50 {fl['p50_ms']:.1f} ms, p95 {fl['p95_ms']:.1f} ms")
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in res['load_average'])} ({res['cpu']})")
    for e in load["first_errors"]:
        print("  failed:", e)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 1 if load["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
