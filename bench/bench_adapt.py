"""Adaptation versus training from scratch on the sample bank (DESIGN §9, issue 15).

For each case, in one run and one process (so the two curves are measured side by side):
- the parent artifact's explained variance on held-out rows of the new activations;
- **adapted**: the parent warm-started and fine-tuned (``compliance.interp.adapt.fine_tune``);
- **from scratch**: the same architecture and width (same k / thresholds), initialised as the
  sample bank initialises its SAEs (random unit decoder rows × 0.1, encoder = decoder transposed,
  b_dec = the data mean), trained by the very same loop, loss, optimiser, batch and seed;
- held-out EV every ``--every`` steps for both (time-to-EV curves), the compute (FLOP =
  3 × forward FLOPs per row × rows seen) each needs to first reach the target EV, their ratio,
  and the adapted artifact's feature survival and carried labels against the parent.

    python bench/bench_adapt.py [--bank DIR] [--device cpu|cuda] [--steps 1500] [--every 10]
                                [--target 0.95] [--threads N] [--out results.json]

Cases: retail-pd's v1 SAE adapted to v4 (held-out rows of 2026Q2 through v4), and card-fraud's
v3 JumpReLU SAE on July 2026 (the drifted 2026Q3 window) through v3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compliance.checks.drift import read_frame  # noqa: E402
from compliance.interp.adapt import (  # noqa: E402
    AdaptData,
    AdaptSettings,
    _as_coder,
    adapted_coder,
    check_data,
    explained_variance,
    fine_tune,
    split_rows,
)
from compliance.interp.alignment import feature_survival  # noqa: E402
from compliance.interp.downstream import capture_activations  # noqa: E402
from compliance.interp.headers import read_feature_labels  # noqa: E402
from compliance.interp.loaders import load_artifact  # noqa: E402

CASES = [
    {"name": "retail-pd SAE v1 → v4", "model": "retail-pd", "version": "v4", "artifact": "artifacts/retail-pd/sae-l1-v1",
     "data": "data/loans_2026Q2.parquet", "hook": "blocks.1.hook_resid_pre", "target": 0.95},
    {"name": "card-fraud SAE v3 on July 2026 (drifted)", "model": "card-fraud", "version": "v3",
     "artifact": "artifacts/card-fraud/sae-l2-v3", "data": "data/cards_2026-07.parquet",
     "hook": "blocks.2.hook_resid_pre", "target": 0.9},
]


def scratch_init(parent, x: torch.Tensor, seed: int):
    """The parent's architecture with the sample bank's initialisation (sample_data/artifacts.py)."""
    g = torch.Generator().manual_seed(seed)
    m, d = parent.n_features, parent.d_in
    w_dec = torch.randn(m, d, generator=g)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True) * 0.1
    t = {"W_enc_t": w_dec.T.clone(), "b_enc": torch.zeros(m), "W_dec": w_dec.clone(), "b_dec": x.mean(0).clone()}
    return _as_coder(parent, t)


def first_reach(curve: list[dict], target: float) -> dict | None:
    return next((p for p in curve if p["explained_variance"] >= target), None)


def run_case(case: dict, bank: Path, args) -> dict:
    from sample_data.adapter import load as load_model

    parent = load_artifact(bank / case["artifact"])
    model = load_model(bank / f"models/{case['model']}/{case['version']}.safetensors")
    frame = read_frame(bank / case["data"]).iloc[:args.max_rows]
    t = time.perf_counter()
    x = capture_activations(model, frame, [case["hook"]], device="cpu")[case["hook"]]
    data = check_data(parent, {"activations": x}, case["data"])
    tr, ho = split_rows(data.n, 0.2, args.seed)
    train, held = AdaptData(data.rows(tr)), AdaptData(data.rows(ho))
    capture_s = time.perf_counter() - t
    target = args.target if args.target is not None else case["target"]
    # the same loop for both; convergence off (tol 0) so each runs its full step budget
    settings = dict(seed=args.seed, max_steps=args.steps, lr=args.lr, batch_rows=args.batch, tol=0.0,
                    min_steps=args.steps + 1, curve_every=args.every)
    ev_before = explained_variance(parent, held, args.device)
    adapted = fine_tune(parent, train, AdaptSettings(**settings), device=args.device, held_out=held)
    scratch_parent = scratch_init(parent, train.tensors["activations"], args.seed)
    scratch = fine_tune(scratch_parent, train, AdaptSettings(**settings), device=args.device, held_out=held)
    child = adapted_coder(parent, adapted)
    labels_path = bank / case["artifact"] / "labels.json"
    labels = read_feature_labels(labels_path) if labels_path.is_file() else {}
    surv = feature_survival(parent.to("cpu"), child.to("cpu"), labels)
    a_hit, s_hit = first_reach(adapted.curve, target), first_reach(scratch.curve, target)
    a_final = adapted.curve[-1]["explained_variance"]
    s_same = first_reach(scratch.curve, a_hit["explained_variance"]) if a_hit else None
    return {
        "case": case["name"], "target_ev": target, "rows_train": train.n, "rows_held_out": held.n,
        "capture_seconds": round(capture_s, 2), "ev_unadapted": ev_before,
        "adapted": {"final_ev": a_final, "steps_to_target": a_hit and a_hit["step"],
                    "flops_to_target": a_hit and a_hit["flops"], "seconds_to_target": a_hit and a_hit["seconds"],
                    "seconds_total": adapted.seconds},
        "scratch": {"final_ev": scratch.curve[-1]["explained_variance"], "steps_to_target": s_hit and s_hit["step"],
                    "flops_to_target": s_hit and s_hit["flops"], "seconds_to_target": s_hit and s_hit["seconds"],
                    "seconds_total": scratch.seconds,
                    "steps_to_adapted_ev_at_target": s_same and s_same["step"]},
        "compute_ratio_to_target": (a_hit["flops"] / s_hit["flops"]) if a_hit and s_hit and s_hit["flops"] else None,
        "survival_share": surv.survival_share, "n_survived": surv.n_survived, "n_features": surv.n_old,
        "labels_carried": len(surv.carried_labels), "labels_lost": len(surv.lost_labels), "mmcs": surv.mmcs,
        "curves": {"adapted": [(p["step"], round(p["explained_variance"], 5)) for p in adapted.curve],
                   "scratch": [(p["step"], round(p["explained_variance"], 5)) for p in scratch.curve]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bank", type=Path, default=ROOT / "sample_data" / "generated")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-rows", type=int, default=20_000)
    ap.add_argument("--target", type=float, default=None, help="EV target (default per case: 0.95, 0.9)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    from sample_data.build import build

    bank = Path(build(args.bank)).parent
    t0 = time.perf_counter()
    results = [run_case(c, bank, args) for c in CASES]
    env = {"machine": platform.machine(), "processor": platform.processor() or platform.platform(),
           "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "device": args.device, "cuda": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
           "load_average": os.getloadavg(), "wall_seconds": round(time.perf_counter() - t0, 1),
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    for r in results:
        a, s = r["adapted"], r["scratch"]
        ratio = "—" if r["compute_ratio_to_target"] is None else f"{100 * r['compute_ratio_to_target']:.1f} %"
        print(f"{r['case']}: EV unadapted {r['ev_unadapted']:.4f}; target {r['target_ev']}")
        print(f"  adapted : reaches it at step {a['steps_to_target']} ({a['flops_to_target'] or 0:.3g} FLOP, "
              f"{a['seconds_to_target']} s); final EV {a['final_ev']:.4f}")
        print(f"  scratch : reaches it at step {s['steps_to_target']} ({s['flops_to_target'] or 0:.3g} FLOP, "
              f"{s['seconds_to_target']} s); final EV {s['final_ev']:.4f}")
        print(f"  compute adapted / scratch to the target: {ratio}; survival {r['n_survived']}/{r['n_features']} "
              f"({100 * r['survival_share']:.0f} %), labels carried {r['labels_carried']}, lost {r['labels_lost']}")
        pts = {st: ev for st, ev in r["curves"]["scratch"]}
        marks = [st for st in (0, 10, 20, 50, 100, 200, 500, 1000, args.steps) if st in pts]
        ad = dict(r["curves"]["adapted"])
        print("  step   : " + " ".join(f"{st:>7}" for st in marks))
        print("  adapted: " + " ".join(f"{ad.get(st, float('nan')):7.4f}" for st in marks))
        print("  scratch: " + " ".join(f"{pts[st]:7.4f}" for st in marks))
    print(json.dumps(env))
    if args.out:
        args.out.write_text(json.dumps({"env": env, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
