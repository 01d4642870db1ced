"""Running a model version with its artifact: capture activations, splice reconstructions.

Hook points are identity modules (see ``adapter.py``): a forward hook that returns a tensor
replaces the activation (splice), one that returns ``None`` only reads it (capture).
SAEs read and replace one hook; a transcoder reads its input hook and replaces its output
hook; a CLT reads ``blocks.{l}.hook_resid_pre`` and replaces ``blocks.{l}.hook_mlp_out``
for every layer l (features encoded at layer i write into layers i..L-1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from compliance.errors import InputError
from compliance.interp.adapter import LoadedModel
from compliance.interp.fidelity import pick_device
from compliance.interp.loaders import CrossLayerTranscoder, require_coder
from compliance.interp.serial import ToDict


@dataclass
class HookPlan:
    inputs: list[str]  # hooks read (SAE: the one hook; CLT: one per layer)
    outputs: list[str]  # hooks replaced (SAE: same as inputs)


def hook_plan(coder, *, hook_name: str | None = None, input_hooks: list[str] | None = None,
              output_hooks: list[str] | None = None) -> HookPlan:
    """Which hook points ``coder`` reads and replaces (explicit names win over the artifact's)."""
    require_coder(coder, check="splicing")
    info = coder.info
    if coder.kind == "sae":
        h = hook_name or (input_hooks or [None])[0] or info.hook_name
        if not h:
            raise InputError("SAE has no hook name in its config: pass hook_name")
        return HookPlan([h], [h])
    if coder.kind == "transcoder":
        hin = (input_hooks or [None])[0] or hook_name or info.hook_name
        hout = (output_hooks or [None])[0] or info.extra.get("hook_name_out")
        if hin and not hout and (m := re.fullmatch(r"blocks\.(\d+)\.hook_resid_pre", hin)):
            hout = f"blocks.{m.group(1)}.hook_mlp_out"
        if not hin or not hout:
            raise InputError("transcoder hook points unknown: pass input_hooks and output_hooks")
        return HookPlan([hin], [hout])
    L = coder.n_layers
    ins = input_hooks or [f"blocks.{l}.hook_resid_pre" for l in range(L)]
    outs = output_hooks or [f"blocks.{l}.hook_mlp_out" for l in range(L)]
    if len(ins) != L or len(outs) != L:
        raise InputError(f"CLT has {L} layers: need {L} input and {L} output hooks")
    return HookPlan(list(ins), list(outs))


def _modules(model: LoadedModel, names: list[str]) -> list[torch.nn.Module]:
    missing = [n for n in names if n not in model.hook_points]
    if missing:
        raise InputError(
            f"hook point(s) {missing} not in the model (has: {', '.join(sorted(model.hook_points))})"
        )
    return [model.hook_points[n] for n in names]


@contextmanager
def _hooks(pairs):
    handles = [m.register_forward_hook(fn) for m, fn in pairs]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _frame_batches(model: LoadedModel, frame, batch_rows: int, dev) -> Iterator[tuple]:
    if len(frame) == 0:
        raise InputError("empty data frame")
    for s in range(0, len(frame), batch_rows):
        part = frame.iloc[s:s + batch_rows]
        x = model.encode_inputs(part)
        if not torch.is_tensor(x) or x.shape[0] != len(part):
            raise InputError("adapter encode_inputs must return a tensor with one row per frame row")
        if not torch.isfinite(x).all():
            raise InputError(f"model inputs for rows {s}..{s + len(part) - 1} contain NaN or Inf")
        yield part, x.to(dev)


def _logits(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    return _logits_of(model.module(x))


def _logits_of(z: torch.Tensor) -> torch.Tensor:
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim != 1:
        raise InputError(f"model output must be one logit per row, got shape {list(z.shape)}")
    return z.double()


# ------------------------------------------------------------------ capture
def capture(model: LoadedModel, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """One forward pass; returns the activation at each named hook point."""
    return _capture_run(model, x, names)[0]


def _capture_run(model: LoadedModel, x: torch.Tensor, names: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One clean forward pass: the activations at the named hook points and the model's output
    (the capture hooks only read, so the output is the clean run's, bit for bit)."""
    got: dict[str, torch.Tensor] = {}

    def make(name):
        def fn(_m, _inp, out):
            got[name] = out.detach()
        return fn

    with torch.no_grad(), _hooks([(m, make(n)) for m, n in zip(_modules(model, names), names)]):
        z = model.module(x)
    return got, z


def capture_activations(model: LoadedModel, frame, hook_names: list[str], batch_rows: int = 1024,
                        device=None) -> dict[str, torch.Tensor]:
    """Activations at ``hook_names`` for every row of ``frame`` (CPU tensors, one per hook)."""
    dev = pick_device(device)
    model.module.to(dev)
    parts: dict[str, list] = {n: [] for n in hook_names}
    for _, x in _frame_batches(model, frame, batch_rows, dev):
        for n, t in capture(model, x, hook_names).items():
            parts[n].append(t.cpu())
    return {n: torch.cat(v) for n, v in parts.items()}


def model_activation_batches(coder, model: LoadedModel, frame, *, batch_rows: int = 1024,
                             device=None, clean: list | None = None, **hooks) -> Iterator[dict]:
    """Fidelity batches (see ``fidelity.batch_widths``) computed from the model's clean run.
    ``clean``, when given, receives each batch's ``(rows, inputs, clean logits)``, so that
    :func:`compute_downstream` on the same frame need not encode and run the clean model again."""
    plan = hook_plan(coder, **hooks)
    dev = pick_device(device)
    model.module.to(dev)
    names = list(dict.fromkeys(plan.inputs + plan.outputs))
    for part, x in _frame_batches(model, frame, batch_rows, dev):
        cap, z = _capture_run(model, x, names)
        if clean is not None:
            clean.append((part, x, _logits_of(z)))
        if coder.kind == "sae":
            yield {"activations": cap[plan.inputs[0]]}
        elif coder.kind == "transcoder":
            yield {"activations": cap[plan.inputs[0]], "targets": cap[plan.outputs[0]]}
        else:
            yield ({f"inputs_{l}": cap[h] for l, h in enumerate(plan.inputs)}
                   | {f"targets_{l}": cap[h] for l, h in enumerate(plan.outputs)})


def save_activations(path: str | Path, tensors: dict[str, torch.Tensor], *,
                     metadata: dict[str, str] | None = None) -> None:
    """Write activations as safetensors; ``metadata`` (strings) goes into the header, e.g. the
    provenance :func:`compliance.interp.headers.activation_provenance` reads back."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(path),
              metadata={str(k): str(v) for k, v in (metadata or {}).items()} or None)


# ------------------------------------------------------------------ splice
def _splice_hooks(coder, model: LoadedModel, plan: HookPlan, mode: str):
    """Forward hooks that replace the output hook(s) with the reconstruction (or zeros)."""
    if mode == "zero":
        return [(m, lambda _m, _i, out: torch.zeros_like(out)) for m in _modules(model, plan.outputs)]
    if coder.kind == "sae":
        def sae_fn(_m, _i, out):
            return coder.reconstruct(out).to(out.dtype)
        return [(_modules(model, plan.inputs)[0], sae_fn)]
    if coder.kind == "transcoder":
        seen = {}

        def read(_m, _i, out):
            seen["x"] = out

        def write(_m, _i, out):
            if "x" not in seen:
                raise InputError(f"input hook {plan.inputs[0]} did not run before {plan.outputs[0]}")
            return coder.reconstruct(seen.pop("x")).to(out.dtype)

        return [(_modules(model, plan.inputs)[0], read), (_modules(model, plan.outputs)[0], write)]
    assert isinstance(coder, CrossLayerTranscoder)
    L = coder.n_layers
    pending: dict[int, torch.Tensor] = {}

    def make_read(i):
        def read(_m, _i, out):
            if i == 0:
                pending.clear()
            c = coder.contributions(i, coder.encode_layer(i, out))
            for j in range(L - i):
                pending[i + j] = pending[i + j] + c[:, j, :] if (i + j) in pending else c[:, j, :]
        return read

    def make_write(l):
        def write(_m, _i, out):
            if l not in pending:
                raise InputError(f"CLT layer {l}: output hook ran before its input hook")
            return (pending.pop(l) + coder.b_dec[l]).to(out.dtype)
        return write

    return ([(m, make_read(i)) for i, m in enumerate(_modules(model, plan.inputs))]
            + [(m, make_write(l)) for l, m in enumerate(_modules(model, plan.outputs))])


@dataclass
class DownstreamResult(ToDict):
    n_rows: int
    kl: float  # mean KL(p_clean ‖ p_spliced), Bernoulli outputs, nats
    decision_flip_rate: float
    loss_recovered: float | None  # None without labels or when L_zero == L_clean
    loss_clean: float | None
    loss_spliced: float | None
    loss_zero: float | None
    decision_threshold: float
    positive_rate_clean: float
    positive_rate_spliced: float
    hooks_in: list[str] = field(default_factory=list)
    hooks_out: list[str] = field(default_factory=list)


def _bernoulli_kl(zc: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(zc)
    return (p * (F.logsigmoid(zc) - F.logsigmoid(zs))
            + (1 - p) * (F.logsigmoid(-zc) - F.logsigmoid(-zs)))


def compute_downstream(coder, model: LoadedModel, frame, *, batch_rows: int = 1024, device=None,
                       row_sink=None, clean: list | None = None, **hooks) -> DownstreamResult:
    """Splice the artifact's reconstruction into the forward pass and compare with the clean
    run. ``hooks``: ``hook_name`` / ``input_hooks`` / ``output_hooks`` (see :func:`hook_plan`).
    ``row_sink(kl_rows, flip_rows)``, when given, receives each batch's per-row KL and flips
    (budgeted checks build their confidence intervals from them). ``clean``: the batches that
    :func:`model_activation_batches` recorded for this frame (its clean run, reused)."""
    plan = hook_plan(coder, **hooks)
    dev = pick_device(device)
    model.module.to(dev)
    coder.to(dev)
    label = model.label_column
    if label is not None and label not in frame.columns:
        label = None
    thr = float(model.decision_threshold)
    n = 0
    kl = flips = pos_c = pos_s = 0.0
    loss = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    splice = _splice_hooks(coder, model, plan, "splice")
    zero = _splice_hooks(coder, model, plan, "zero")
    if clean is not None and sum(len(r[0]) for r in clean) != len(frame):
        clean = None  # not a whole clean run of this frame: run it here
    with torch.no_grad():
        runs = clean if clean is not None else ((part, x, None) for part, x in _frame_batches(model, frame, batch_rows, dev))
        for part, x, zc in runs:
            if zc is None:
                zc = _logits(model, x)
            with _hooks(splice):
                zs = _logits(model, x)
            dc, ds = torch.sigmoid(zc) >= thr, torch.sigmoid(zs) >= thr
            n += x.shape[0]
            kl_rows, flip_rows = _bernoulli_kl(zc, zs), dc != ds
            if row_sink is not None:
                row_sink(kl_rows, flip_rows)
            kl += float(kl_rows.sum())
            flips += float(flip_rows.sum())
            pos_c += float(dc.sum())
            pos_s += float(ds.sum())
            if label is not None:
                y = torch.as_tensor(part[label].to_numpy(dtype="float64"), device=dev)
                if not torch.isfinite(y).all():
                    raise InputError(f"label column {label!r} has missing values")
                with _hooks(zero):
                    zz = _logits(model, x)
                for key, z in (("clean", zc), ("spliced", zs), ("zero", zz)):
                    loss[key] += float(F.binary_cross_entropy_with_logits(z, y, reduction="sum"))
    lc = ls = lz = rec = None
    if label is not None:
        lc, ls, lz = loss["clean"] / n, loss["spliced"] / n, loss["zero"] / n
        rec = (lz - ls) / (lz - lc) if abs(lz - lc) > 1e-12 else None
    return DownstreamResult(
        n_rows=n, kl=kl / n, decision_flip_rate=flips / n, loss_recovered=rec,
        loss_clean=lc, loss_spliced=ls, loss_zero=lz, decision_threshold=thr,
        positive_rate_clean=pos_c / n, positive_rate_spliced=pos_s / n,
        hooks_in=plan.inputs, hooks_out=plan.outputs,
    )
