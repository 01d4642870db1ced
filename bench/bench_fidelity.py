"""Fidelity throughput vs plain matmul throughput on the same shapes, in the same run.

    python bench/bench_fidelity.py                 # CPU, ReLU SAE d=512, m=16384
    python bench/bench_fidelity.py --device cuda   # on a GPU machine

Prints one JSON object. "peak" is two bare matmuls per batch (x @ W_enc, f @ W_dec) into
preallocated buffers — the ceiling for any dense SAE evaluation; "fidelity" is
``compute_fidelity`` end to end (encode, decode, every metric, float64 sums), fed from
in-memory batches; "naive" is the textbook loop (fresh tensors each step, metrics computed
with separate passes) for context. GFLOP/s counts the analytic 4·d·m FLOP per row.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compliance.interp import synthetic as syn  # noqa: E402
from compliance.interp.fidelity import compute_fidelity  # noqa: E402
from compliance.interp.loaders import load_artifact  # noqa: E402


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict, dev, repeats):
    """Run every candidate once per round, rotating the order, so load from other processes
    on a shared machine hits all of them alike. Returns {name: [seconds per round]}."""
    runs = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            sync(dev)
            t0 = time.perf_counter()
            fns[k]()
            sync(dev)
            runs[k].append(time.perf_counter() - t0)
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--m", type=int, default=16384)
    ap.add_argument("--rows", type=int, default=8192, help="activation rows per pass")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--density", type=float, default=0.02, help="target share of active features")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    d, m, n, b = args.d, args.m, args.rows, args.batch
    if dev.type == "cuda":
        n = max(n, 262144)  # GPU passes are short: use more rows for a stable timing

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        t = syn.write_saelens(Path(tmp) / "sae", rng, d, m)
        # pre-activations ~ N(0, 1) for unit-variance inputs; shift so ≈ density of features fire
        from scipy.stats import norm
        from safetensors.numpy import save_file

        t["b_enc"][:] = norm.ppf(1 - args.density)
        t["b_enc"] *= -1
        t["b_dec"][:] = 0
        save_file(t, str(Path(tmp) / "sae" / "sae_weights.safetensors"))
        coder = load_artifact(Path(tmp) / "sae", device=dev)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x_all = torch.randn(n, d, generator=gen).to(dev)
    batches = [{"activations": x_all[s:s + b]} for s in range(0, n, b)]
    flop = 4 * d * m * n

    W_enc, W_dec = coder.W_enc_t, coder.W_dec
    enc = torch.empty(b, m, device=dev)
    dec = torch.empty(b, d, device=dev)

    def peak():
        for s in range(0, n, b):
            torch.mm(x_all[s:s + b], W_enc, out=enc)
            torch.mm(enc, W_dec, out=dec)

    def fidelity():
        return compute_fidelity(coder, batches, device=dev, max_batch_rows=b)

    def fidelity_dense():
        return compute_fidelity(coder, batches, device=dev, max_batch_rows=b, sparse=False)

    def naive():
        sse = 0.0
        counts = torch.zeros(m, device=dev)
        for s in range(0, n, b):
            x = x_all[s:s + b]
            f = torch.relu(x @ W_enc + coder.b_enc)
            xh = f @ W_dec + coder.b_dec
            sse += float(((x - xh) ** 2).sum())
            counts += (f > 0).float().sum(0)
            _ = float((f > 0).float().sum(1).mean()), float(f.abs().sum(1).mean())
            _ = float(torch.nn.functional.cosine_similarity(x, xh).mean())

    fns = {"peak": peak, "fidelity": fidelity, "fidelity_dense": fidelity_dense, "naive": naive}
    with torch.inference_mode():
        peak()  # warm-up
        res = fidelity()
        runs = interleaved(fns, dev, args.repeats)

    def row(k, agg):
        t = agg(runs[k])
        return {"s": t, "rows_per_s": n / t, "gflops": flop / t / 1e9}

    out = {
        "machine": platform.processor() or platform.machine(),
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "d": d, "m": m, "rows": n, "batch": b, "l0": round(res.l0, 1),
        "median": {k: row(k, statistics.median) for k in fns},
        "best": {k: row(k, min) for k in fns},
        "share_of_peak_median": {k: statistics.median(runs["peak"]) / statistics.median(runs[k])
                                 for k in fns},
        "share_of_peak_best": {k: min(runs["peak"]) / min(runs[k]) for k in fns},
        "share_of_peak_paired": {k: statistics.median(p / q for p, q in zip(runs["peak"], runs[k]))
                                 for k in fns},
        "runs": runs,
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
