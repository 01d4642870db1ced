"""Overhead: model latency with the artifact attached versus without (DESIGN §3 Overhead).

"Attached" means what production explanation does: a forward hook at the artifact's input
hook point(s) computes the features and the reconstruction on every forward pass (the model
output is left unchanged). Runs alternate between the two configurations after warm-up so
that frequency and cache drift hit both equally; the median of each is reported.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from compliance.errors import InputError
from compliance.interp.adapter import LoadedModel
from compliance.interp.downstream import _hooks, _modules, hook_plan
from compliance.interp.fidelity import pick_device
from compliance.interp.loaders import CrossLayerTranscoder
from compliance.interp.serial import ToDict


def model_flops_per_row(module: torch.nn.Module) -> int:
    """Analytic FLOPs of one row through every ``nn.Linear`` (2·in·out each, run once)."""
    return sum(2 * m.in_features * m.out_features for m in module.modules()
               if isinstance(m, torch.nn.Linear))


@dataclass
class OverheadResult(ToDict):
    n_rows: int
    repeats: int
    warmup: int
    latency_base_s: float  # median seconds per forward of n_rows, artifact detached
    latency_attached_s: float
    overhead_ratio: float  # (attached − base) / base
    model_flops_per_row: int
    artifact_flops_per_row: int
    flops_ratio: float
    device: str
    base_runs_s: list[float] = field(repr=False, default_factory=list)
    attached_runs_s: list[float] = field(repr=False, default_factory=list)


def _attach(coder, model: LoadedModel, plan):
    if isinstance(coder, CrossLayerTranscoder):
        def make(i):
            def fn(_m, _i, out):
                coder.contributions(i, coder.encode_layer(i, out))
            return fn
        return [(m, make(i)) for i, m in enumerate(_modules(model, plan.inputs))]

    def fn(_m, _i, out):
        coder.reconstruct(out)
    return [(_modules(model, plan.inputs)[0], fn)]


def measure_overhead(coder, model: LoadedModel, inputs, *, repeats: int = 20, warmup: int = 3,
                     device=None, **hooks) -> OverheadResult:
    """``inputs``: a data frame (encoded with the adapter) or a model-input tensor."""
    if repeats < 1 or warmup < 0:
        raise InputError("repeats must be >= 1 and warmup >= 0")
    plan = hook_plan(coder, **hooks)
    dev = pick_device(device)
    model.module.to(dev)
    coder.to(dev)
    x = inputs if torch.is_tensor(inputs) else model.encode_inputs(inputs)
    if x.shape[0] == 0:
        raise InputError("overhead: no input rows")
    x = x.to(dev)
    attach = _attach(coder, model, plan)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def once(attached: bool) -> float:
        sync()
        t0 = time.perf_counter()
        if attached:
            with _hooks(attach):
                model.module(x)
        else:
            model.module(x)
        sync()
        return time.perf_counter() - t0

    base, att = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            once(False)
            once(True)
        for r in range(repeats):
            order = (False, True) if r % 2 == 0 else (True, False)
            for a in order:
                (att if a else base).append(once(a))
    mb, ma = statistics.median(base), statistics.median(att)
    mf, af = model_flops_per_row(model.module), coder.flops_per_row()
    return OverheadResult(
        n_rows=x.shape[0], repeats=repeats, warmup=warmup, latency_base_s=mb,
        latency_attached_s=ma, overhead_ratio=(ma - mb) / mb, model_flops_per_row=mf,
        artifact_flops_per_row=af, flops_ratio=af / mf if mf else float("nan"),
        device=str(dev), base_runs_s=base, attached_runs_s=att,
    )
