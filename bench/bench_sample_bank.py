"""Sample bank: build time, the story's fidelity numbers, and artifact latency overhead.

Usage: python bench/bench_sample_bank.py [BANK_DIR]   (builds into BANK_DIR if needed)

Fidelity: explained variance (DESIGN §3, pooled, float64) of each `validate` event of story.yaml,
computed with plain torch from the files (independent of compliance.interp).
Overhead: median wall time of the model forward on a batch with the artifact spliced at its hook
(encode + decode, output replaced) versus without, 5 warm-up + 30 timed runs, one thread.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sample_data import adapter  # noqa: E402
from sample_data.build import build  # noqa: E402


def ev(x, xh):
    x, xh = x.double(), xh.double()
    mse = ((x - xh) ** 2).sum(1).mean()
    return float(1 - mse / ((x ** 2).sum(1).mean() - (x.mean(0) ** 2).sum()))


def splice_fn(bank: Path, art: dict):
    """Return (input hook, output hook, fn: input activation -> reconstruction)."""
    p = bank / art["path"]
    if art["kind"] == "sae":
        cfg = json.loads((p / "cfg.json").read_text())
        w = load_file(str(p / "sae_weights.safetensors"))

        def f(x):
            pre = (x - w["b_dec"] if cfg["apply_b_dec_to_input"] else x) @ w["W_enc"] + w["b_enc"]
            if cfg["architecture"] == "topk":
                a = torch.relu(pre) * (pre >= pre.topk(cfg["k"], dim=-1).values[:, -1:])
            elif cfg["architecture"] == "jumprelu":
                a = torch.relu(pre) * (pre > w["threshold"])
            else:
                a = torch.relu(pre)
            return a @ w["W_dec"] + w["b_dec"]
        return art["hook"], art["hook"], f
    if art["kind"] == "transcoder":
        w = load_file(str(p))
        return art["hook"], art["hook_out"], lambda x: torch.relu(x @ w["W_enc"].T + w["b_enc"]) @ w["W_dec"] + w["b_dec"]
    return None


def main() -> None:
    bank = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/sample-bank")
    t = time.perf_counter()
    build(bank, progress=lambda m: print(m, file=sys.stderr))
    print(f"build (or reuse): {time.perf_counter() - t:.1f}s; recorded build time "
          f"{json.loads((bank / 'BUILD.json').read_text())['build_seconds']}s")
    torch.set_num_threads(1)
    man = yaml.safe_load((bank / "manifest.yaml").read_text())
    arts = {a["id"]: a for a in man["artifacts"]}
    events = yaml.safe_load((bank / "story.yaml").read_text())["events"]
    print("\n## story validations (explained variance of the reconstructed activation)")
    for e in events:
        if e["do"] != "validate":
            continue
        art = arts[e["artifact"]]
        sp = splice_fn(bank, art)
        if sp is None:
            print(f"{e['at'][:10]} {art['id']:<24} on {e['version']}: (kind {art['kind']}: not a reconstruction)")
            continue
        lm = adapter.load(bank / f"models/{art['model']}/{e['version']}.safetensors")
        hin, hout, f = sp
        got = {}
        hs = [lm.hook_points[h].register_forward_hook(lambda m, i, o, h=h: got.__setitem__(h, o)) for h in {hin, hout}]
        with torch.no_grad():
            lm.module(lm.encode_inputs(pd.read_parquet(bank / e["data"])))
            val = ev(got[hout], f(got[hin]))
        for h in hs:
            h.remove()
        print(f"{e['at'][:10]} {art['id']:<24} on {e['version']} ({e['data'][5:]}): EV {val:.4f}")
    print("\n## overhead (median forward latency, 1 thread)")
    for e in events:
        if e["do"] != "overhead":
            continue
        art = arts[e["artifact"]]
        lm = adapter.load(bank / f"models/{art['model']}/{e['version']}.safetensors")
        frame = pd.read_parquet(bank / f"data/{ {'retail-pd': 'loans', 'card-fraud': 'cards', 'sme-limit': 'sme'}[art['model']] }_2026Q2.parquet")
        for batch in (1024, 8192):
            x = lm.encode_inputs(frame.head(batch))

            def timed():
                ts = []
                for i in range(35):
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        lm.module(x)
                    if i >= 5:
                        ts.append(time.perf_counter() - t0)
                return statistics.median(ts)

            base = timed()
            if art["kind"] == "clt":  # all layers encoded and decoded in the forward
                L = 3
                we = [load_file(str(bank / art["path"] / f"W_enc_{i}.safetensors")) for i in range(L)]
                wd = [load_file(str(bank / art["path"] / f"W_dec_{i}.safetensors"))[f"W_dec_{i}"] for i in range(L)]
                acts = {}

                def pre_hook(i):
                    def h(m, inp, o):
                        acts[i] = torch.relu(o @ we[i][f"W_enc_{i}"].T + we[i][f"b_enc_{i}"])
                    return h

                def out_hook(l):
                    def h(m, inp, o):
                        return sum(acts[i] @ wd[i][:, l - i, :] for i in range(l + 1)) + we[l][f"b_dec_{l}"]
                    return h
                hs = [lm.hook_points[f"blocks.{i}.hook_resid_pre"].register_forward_hook(pre_hook(i)) for i in range(L)]
                hs += [lm.hook_points[f"blocks.{i}.hook_mlp_out"].register_forward_hook(out_hook(i)) for i in range(L)]
            else:
                hin, hout, f = splice_fn(bank, art)
                if hin == hout:
                    hs = [lm.hook_points[hin].register_forward_hook(lambda m, i, o: f(o))]
                else:
                    cache = {}
                    hs = [lm.hook_points[hin].register_forward_hook(lambda m, i, o: cache.__setitem__("x", o)),
                          lm.hook_points[hout].register_forward_hook(lambda m, i, o: f(cache["x"]))]
            with_art = timed()
            for h in hs:
                h.remove()
            print(f"{art['id']:<24} on {e['version']} batch {batch}: model {base * 1e3:.2f} ms, with artifact "
                  f"{with_art * 1e3:.2f} ms, overhead {100 * (with_art / base - 1):.1f} %")


if __name__ == "__main__":
    main()
