"""Adaptation (DESIGN §9): warm-start a stale SAE, transcoder or CLT from its own weights and
fine-tune it on a newer version's activations under a compute budget.

Same architecture and width as the parent: the trainable tensors are the encoder, the decoder,
their biases (and a skip connection when there is one); TopK's ``k`` and JumpReLU's thresholds
are kept as they are. The loss is the reconstruction error, normalised by the data's scale
(Σ‖y − ŷ‖² / (N · s² · d), s = the mean per-dimension standard deviation of the targets), plus
the architecture's own sparsity term:

- ReLU: λ · mean_n Σ_i f_i ‖W_dec,i‖ / s (SAELens' L1 on decoder-norm-weighted activations);
- JumpReLU: λ · L0 with frozen thresholds — the step's straight-through gradient reaches only
  the thresholds (as in SAELens), so with thresholds kept this term is reported, never pushed on;
- TopK: none (``k`` is the sparsity).

Training is plain Adam on seeded minibatches (``torch.Generator``), float32, so the same seed,
data and step budget give the same weights on the same machine (CPU). It stops at the first of:
the step budget, the time budget, or convergence (the mean loss of the last ``window`` steps
improves on the previous window's by less than ``tol``, relatively).

Writers save the adapted weights in the parent's own format, tensor names, dtypes and metadata
(SAELens folders, circuit-tracer transcoders and CLTs); other formats are refused up front.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from compliance.errors import InputError
from compliance.interp.fidelity import batch_widths, pick_device
from compliance.interp.loaders import CrossLayerTranscoder, SparseCoder
from compliance.interp.serial import ToDict

ADAPTABLE_KINDS = ("sae", "transcoder", "clt")
WRITABLE_FORMATS = ("saelens", "circuit_tracer_transcoder", "circuit_tracer_clt")
TRAINABLE_ACTIVATIONS = ("relu", "jumprelu", "jumprelu_relu", "topk")
DEFAULT_SPARSITY = 1e-2  # λ when the parent's config does not record its own (l1_coefficient)


def adaptable(coder) -> None:
    """``InputError`` (one line) unless ``coder`` can be adapted and saved in its own format."""
    kind = getattr(coder, "kind", type(coder).__name__)
    if kind not in ADAPTABLE_KINDS:
        raise InputError(f"a {kind} artifact cannot be adapted (adaptation applies to {', '.join(ADAPTABLE_KINDS)})")
    fmt = coder.info.format
    if fmt not in WRITABLE_FORMATS:
        raise InputError(f"a {fmt} artifact cannot be adapted: adapted weights are saved in the parent's own "
                         f"format, written here for {', '.join(WRITABLE_FORMATS)} only")
    if isinstance(coder, SparseCoder):
        if coder.activation not in TRAINABLE_ACTIVATIONS:
            raise InputError(f"a {coder.activation} {kind} cannot be adapted (supported: ReLU, JumpReLU, TopK)")
        if coder.norm != "none" or coder.info.extra.get("rescale_acts_by_decoder_norm"):
            raise InputError(f"an artifact with run-time normalisation ({coder.norm}) or decoder-norm rescaling "
                             "cannot be adapted")


# ------------------------------------------------------------------ data
@dataclass
class AdaptData:
    """All rows in memory: ``{name: tensor [N, width]}`` as :func:`fidelity.batch_widths` names them."""

    tensors: dict[str, torch.Tensor]

    @property
    def n(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def rows(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[idx] for k, v in self.tensors.items()}


def check_data(coder, tensors: dict[str, torch.Tensor], where: str) -> AdaptData:
    """Widths, row counts and finiteness of the adaptation data, each refused in one line."""
    widths = batch_widths(coder)
    n = None
    out = {}
    for name, w in widths.items():
        if name not in tensors:
            raise InputError(f"{where}: missing tensor {name!r} (a {coder.kind} needs {', '.join(widths)})")
        t = tensors[name]
        if t.ndim != 2 or t.shape[1] != w:
            raise InputError(f"{where}: tensor {name!r} has shape {list(t.shape)}, expected [N, {w}] "
                             f"(the parent's width: adaptation keeps the architecture and width)")
        if n is not None and t.shape[0] != n:
            raise InputError(f"{where}: tensor {name!r} has {t.shape[0]} rows, expected {n}")
        n = t.shape[0]
        t = t.to(torch.float32)
        bad = ~torch.isfinite(t).all(dim=1)
        if bool(bad.any()):
            raise InputError(f"{where}: {name} row {int(bad.nonzero()[0, 0])} contains NaN or Inf")
        out[name] = t.contiguous()
    if not n or n < 20:
        raise InputError(f"{where}: {n or 0} rows; adaptation needs at least 20 (training and held-out rows)")
    return AdaptData(out)


def split_rows(n: int, holdout_share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split into training and held-out row indices (held-out never trained on)."""
    if not 0.0 < holdout_share < 1.0:
        raise InputError(f"held-out share must lie in (0, 1), got {holdout_share}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(10, int(round(n * holdout_share)))
    return perm[k:].sort().values, perm[:k].sort().values


# ------------------------------------------------------------------ the trainable copy
class Trainable:
    """Float32 trainable tensors of a parent coder, with a differentiable forward."""

    def __init__(self, coder, device):
        self.coder = coder
        self.clt = isinstance(coder, CrossLayerTranscoder)
        leaf = lambda t: t.detach().to(device, torch.float32).clone().requires_grad_(True)  # noqa: E731
        fixed = lambda t: None if t is None else t.detach().to(device, torch.float32).clone()  # noqa: E731
        if self.clt:
            L = coder.n_layers
            self.p = {}
            for i in range(L):
                self.p[f"W_enc_t_{i}"] = leaf(coder.W_enc_t[i])
                self.p[f"b_enc_{i}"] = leaf(coder.b_enc[i])
                self.p[f"W_dec_{i}"] = leaf(coder.W_dec[i])
                self.p[f"b_dec_{i}"] = leaf(coder.b_dec[i])
            self.threshold = None if coder.threshold is None else [fixed(t) for t in coder.threshold]
        else:
            self.p = {"W_enc_t": leaf(coder.W_enc_t), "b_enc": leaf(coder.b_enc), "W_dec": leaf(coder.W_dec),
                      "b_dec": leaf(coder.b_dec)}
            if coder.W_skip is not None:
                self.p["W_skip"] = leaf(coder.W_skip)
            # SAELens' apply_b_dec_to_input subtracts the decoder bias itself (one shared tensor)
            self.pre_bias_is_b_dec = coder.pre_bias is not None
            self.threshold = fixed(coder.threshold)

    def params(self) -> list[torch.Tensor]:
        return list(self.p.values())

    def _act(self, pre: torch.Tensor, thr) -> torch.Tensor:
        act = "jumprelu" if self.clt and thr is not None else ("relu" if self.clt else self.coder.activation)
        if act == "relu":
            return torch.relu(pre)
        if act == "jumprelu":  # circuit-tracer: pre · [pre > θ]
            return pre * (pre > thr)
        if act == "jumprelu_relu":  # SAELens: relu(pre) · [pre > θ]
            return torch.relu(pre) * (pre > thr)
        vals, idx = pre.topk(self.coder.k, dim=1)  # TopK: k largest pre-activations, then ReLU
        return torch.zeros_like(pre).scatter(1, idx, torch.relu(vals))

    def forward(self, batch: dict) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(targets, reconstructions, feature activations), one entry per output layer."""
        p = self.p
        if self.clt:
            L = self.coder.n_layers
            acts = [self._act(batch[f"inputs_{i}"] @ p[f"W_enc_t_{i}"] + p[f"b_enc_{i}"],
                              None if self.threshold is None else self.threshold[i]) for i in range(L)]
            ys = [sum(acts[i] @ p[f"W_dec_{i}"][:, l - i, :] for i in range(l + 1)) + p[f"b_dec_{l}"]
                  for l in range(L)]
            return [batch[f"targets_{l}"] for l in range(L)], ys, acts
        x = batch["activations"]
        y = x if self.coder.kind == "sae" else batch["targets"]
        xin = x - p["b_dec"] if self.pre_bias_is_b_dec else x
        f = self._act(xin @ p["W_enc_t"] + p["b_enc"], self.threshold)
        yh = f @ p["W_dec"] + p["b_dec"]
        if "W_skip" in p:
            yh = yh + x @ p["W_skip"].T
        return [y], [yh], [f]

    def decoder_norms(self, i: int) -> torch.Tensor:
        w = self.p[f"W_dec_{i}"] if self.clt else self.p["W_dec"]
        return w.flatten(1).norm(dim=1)

    def sparsity_kind(self) -> str:
        if self.clt:
            return "l1" if self.threshold is None else "l0_frozen"
        return {"relu": "l1", "topk": "none"}.get(self.coder.activation, "l0_frozen")

    def export(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.p.items()}


# ------------------------------------------------------------------ training
@dataclass
class AdaptSettings:
    seed: int
    max_steps: int | None = None  # step budget (deterministic)
    max_seconds: float | None = None  # time budget (wall, training loop only)
    lr: float = 1e-3
    batch_rows: int = 512
    sparsity: float | None = None  # λ; None: the parent's l1_coefficient, else DEFAULT_SPARSITY
    window: int = 50  # convergence: compare the mean loss of successive windows of this many steps
    tol: float = 1e-3  # ... stop when the relative improvement is below this
    min_steps: int = 100  # never declare convergence before this many steps
    curve_every: int = 0  # record held-out EV every this many steps (0: only at the end)

    def __post_init__(self):
        if self.max_steps is None and self.max_seconds is None:
            raise InputError("adaptation needs a budget: steps, seconds or both")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or int(self.max_steps) != self.max_steps
                                           or self.max_steps < 1):
            raise InputError(f"the step budget must be a positive whole number, got {self.max_steps}")
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise InputError(f"the time budget must be a positive duration, got {self.max_seconds}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"the learning rate must be positive, got {self.lr}")
        if self.batch_rows < 1:
            raise InputError(f"batch rows must be positive, got {self.batch_rows}")
        if self.sparsity is not None and not (math.isfinite(self.sparsity) and self.sparsity >= 0):
            raise InputError(f"the sparsity coefficient must be >= 0, got {self.sparsity}")


@dataclass
class AdaptResult(ToDict):
    steps: int
    seconds: float
    stop_reason: str  # "steps" | "time" | "converged"
    final_loss: float  # mean total loss over the last window of steps
    final_recon_loss: float
    final_sparsity_loss: float
    sparsity_term: str  # "l1" | "l0_frozen" | "none"
    sparsity_coefficient: float
    flops: float  # ≈ 3 × forward FLOPs per row × rows seen (forward + backward)
    rows_seen: int
    device: str
    curve: list[dict] = field(default_factory=list)  # [{step, seconds, flops, explained_variance}]
    tensors: dict = field(default_factory=dict, repr=False)  # name -> tensor (not serialised)

    def summary(self) -> dict:
        d = self.to_dict()
        d.pop("tensors")
        return d


def sparsity_coefficient(coder, given: float | None) -> float:
    if given is not None:
        return float(given)
    cfg = coder.info.extra.get("cfg") if isinstance(coder.info.extra.get("cfg"), dict) else {}
    val = cfg.get("l1_coefficient") if cfg else None
    return float(val) if isinstance(val, (int, float)) and math.isfinite(val) and val >= 0 else DEFAULT_SPARSITY


def explained_variance(coder, data: AdaptData, device=None, batch_rows: int = 4096) -> float:
    """Pooled explained variance of ``coder`` on ``data`` (DESIGN §3), via the fidelity code."""
    from compliance.interp.fidelity import compute_fidelity

    def batches():
        for s in range(0, data.n, batch_rows):
            yield {k: v[s:s + batch_rows] for k, v in data.tensors.items()}

    return float(compute_fidelity(coder, batches(), device=device).explained_variance)


def fine_tune(coder, train: AdaptData, settings: AdaptSettings, *, device=None,
              held_out: AdaptData | None = None, on_curve: Callable[[dict], None] | None = None) -> AdaptResult:
    """Warm-start from ``coder`` and fine-tune on ``train`` (see the module docstring)."""
    adaptable(coder)
    dev = pick_device(device)
    tr = Trainable(coder, dev)
    lam = sparsity_coefficient(coder, settings.sparsity)
    kind = tr.sparsity_kind()
    data = {k: v.to(dev) for k, v in train.tensors.items()}
    targets = [data[f"targets_{l}"] for l in range(coder.n_layers)] if tr.clt else \
        [data["activations"] if coder.kind == "sae" else data["targets"]]
    scales = [float(t.std(0).mean().clamp_min(1e-8)) for t in targets]
    opt = torch.optim.Adam(tr.params(), lr=settings.lr)
    gen = torch.Generator().manual_seed(settings.seed)
    n = train.n
    b = min(settings.batch_rows, n)
    flops_row = 3.0 * coder.flops_per_row()
    t0 = time.perf_counter()
    losses: list[tuple[float, float, float]] = []
    step, stop, curve = 0, "steps", []

    def record_curve():
        if held_out is None:
            return
        point = {"step": step, "seconds": round(time.perf_counter() - t0, 4), "flops": flops_row * b * step,
                 "explained_variance": explained_variance(_as_coder(coder, tr.export()), held_out, dev)}
        curve.append(point)
        if on_curve:
            on_curve(point)

    if settings.curve_every:
        record_curve()
    while True:
        if settings.max_steps is not None and step >= settings.max_steps:
            stop = "steps"
            break
        if settings.max_seconds is not None and time.perf_counter() - t0 >= settings.max_seconds:
            stop = "time"
            break
        idx = torch.randint(0, n, (b,), generator=gen).to(dev)
        ys, yhs, fs = tr.forward({k: v[idx] for k, v in data.items()})
        recon = sum(((y - yh) ** 2).sum(-1).mean() / (s * s * y.shape[1]) for y, yh, s in zip(ys, yhs, scales))
        if kind == "l1":
            sparse = lam * sum((f * tr.decoder_norms(i)).sum(-1).mean() / s for i, (f, s) in enumerate(zip(fs, scales)))
        elif kind == "l0_frozen":  # reported only: its gradient reaches the (kept) thresholds alone
            sparse = torch.tensor(lam * sum(float((f != 0).sum(-1).double().mean()) for f in fs), device=dev)
        else:
            sparse = torch.zeros((), device=dev)
        loss = recon + sparse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append((loss.item(), recon.item(), sparse.item()))
        if settings.curve_every and step % settings.curve_every == 0:
            record_curve()
        w = settings.window
        if step >= max(settings.min_steps, 2 * w):
            prev = sum(x[0] for x in losses[-2 * w:-w]) / w
            last = sum(x[0] for x in losses[-w:]) / w
            if prev - last < settings.tol * abs(prev):
                stop = "converged"
                break
    if settings.curve_every and (not curve or curve[-1]["step"] != step):
        record_curve()
    tail = losses[-settings.window:] or [(float("nan"),) * 3]
    mean = lambda j: sum(x[j] for x in tail) / len(tail)  # noqa: E731
    return AdaptResult(steps=step, seconds=round(time.perf_counter() - t0, 4), stop_reason=stop,
                       final_loss=mean(0), final_recon_loss=mean(1), final_sparsity_loss=mean(2),
                       sparsity_term=kind, sparsity_coefficient=lam, flops=flops_row * b * step,
                       rows_seen=b * step, device=str(dev), curve=curve, tensors=tr.export())


def _as_coder(parent, t: dict[str, torch.Tensor]):
    """A coder of the parent's class holding the trained tensors (for evaluation)."""
    if isinstance(parent, CrossLayerTranscoder):
        L = parent.n_layers
        return CrossLayerTranscoder(parent.info, [t[f"W_enc_t_{i}"] for i in range(L)],
                                    [t[f"b_enc_{i}"] for i in range(L)], [t[f"b_dec_{i}"] for i in range(L)],
                                    parent.threshold, [t[f"W_dec_{i}"] for i in range(L)])
    c = parent
    return SparseCoder(c.info, W_enc_t=t["W_enc_t"], b_enc=t["b_enc"], W_dec=t["W_dec"], b_dec=t["b_dec"],
                       pre_bias=t["b_dec"] if c.pre_bias is not None else None, threshold=c.threshold,
                       activation=c.activation, k=c.k, W_skip=t.get("W_skip"), norm=c.norm, norm_out=c.norm_out,
                       kind=c.kind)


def adapted_coder(parent, result: AdaptResult):
    return _as_coder(parent, result.tensors)


# ------------------------------------------------------------------ writers
def _read_all(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()


def _write_like(src: Path, dst: Path, new: dict[str, torch.Tensor]) -> None:
    """Write ``dst`` with ``src``'s tensor names, dtypes and metadata; ``new`` replaces values."""
    old, meta = _read_all(src)
    unknown = sorted(set(new) - set(old))
    if unknown:
        raise InputError(f"{src.name}: no tensor {unknown[0]!r} to replace")
    out = {}
    for k, v in old.items():
        t = new.get(k, v)
        if tuple(t.shape) != tuple(v.shape):
            raise AssertionError(f"{k}: shape {list(t.shape)} != {list(v.shape)}")
        out[k] = t.detach().to("cpu", v.dtype).contiguous()
    save_file(out, str(dst), metadata=meta)


def _name(keys, base: str, i: int | None) -> str:
    if i is not None and f"{base}_{i}" in keys:
        return f"{base}_{i}"
    return base


def write_like_parent(parent, result: AdaptResult, dest: Path) -> Path:
    """Save the adapted tensors in the parent's own format under ``dest`` (a new folder).

    Returns the path to register: the folder (SAELens, CLT) or the layer file (circuit-tracer
    transcoder, written under ``dest`` with the parent's file name). Files the training does not
    change (configs) are copied byte for byte."""
    info, t = parent.info, result.tensors
    dest.mkdir(parents=True, exist_ok=False)
    fmt = info.format
    if fmt == "saelens":
        folder = info.files[1].parent
        shutil.copyfile(folder / "cfg.json", dest / "cfg.json")
        new = {"W_enc": t["W_enc_t"], "b_enc": t["b_enc"], "W_dec": t["W_dec"], "b_dec": t["b_dec"]}
        if "W_skip" in t:
            new["W_skip"] = t["W_skip"]
        _write_like(folder / "sae_weights.safetensors", dest / "sae_weights.safetensors", new)
        return dest
    if fmt == "circuit_tracer_transcoder":
        src = info.files[0]
        new = {"W_enc": t["W_enc_t"].T, "b_enc": t["b_enc"], "W_dec": t["W_dec"], "b_dec": t["b_dec"]}
        if "W_skip" in t:
            new["W_skip"] = t["W_skip"]
        _write_like(src, dest / src.name, new)
        return dest / src.name
    if fmt == "circuit_tracer_clt":
        for i in range(parent.n_layers):
            enc, dec = info.files[2 * i], info.files[2 * i + 1]
            ek = set(_read_all(enc)[0])
            _write_like(enc, dest / enc.name, {_name(ek, "W_enc", i): t[f"W_enc_t_{i}"].T,
                                               _name(ek, "b_enc", i): t[f"b_enc_{i}"],
                                               _name(ek, "b_dec", i): t[f"b_dec_{i}"]})
            dk = set(_read_all(dec)[0])
            _write_like(dec, dest / dec.name, {_name(dk, "W_dec", i): t[f"W_dec_{i}"]})
        root = info.files[0].parent
        for extra in root.iterdir():  # a config beside the layer files travels with them
            if extra.is_file() and extra.suffix in (".json", ".yaml", ".yml") and not (dest / extra.name).exists():
                shutil.copyfile(extra, dest / extra.name)
        return dest
    raise InputError(f"a {fmt} artifact cannot be saved")  # adaptable() refuses it earlier


MANIFEST = "lineage.json"


def write_manifest(dest: Path, lineage: dict) -> Path:
    """The lineage manifest beside the adapted weights (sorted JSON, one file)."""
    p = dest / MANIFEST
    p.write_text(json.dumps(lineage, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return p
