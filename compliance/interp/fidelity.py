"""Reconstruction fidelity of SAEs, transcoders and CLTs (DESIGN §3, SAELens 6.54 formulas).

Streaming: memory is bounded by one batch plus per-feature counters; every sum is accumulated
in float64 whatever the compute dtype, so results do not depend on the batch size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from compliance.errors import InputError
from compliance.interp.headers import read_safetensors_header
from compliance.interp.loaders import CrossLayerTranscoder, SparseCoder, load_artifact, require_coder
from compliance.interp.serial import ToDict

FORMULA_VERSION = "saelens-6.54"
DENSE_THRESHOLD = 0.1
EV_DENOM_EPS = 1e-10
NORM_EPS = 1e-8
SPARSE_MAX_DENSITY = 0.05  # above this share of active features, decode densely


def pick_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------ batch layout
def batch_widths(coder) -> dict[str, int]:
    """Tensor names a fidelity batch must hold for ``coder``, with their widths."""
    require_coder(coder, check="fidelity")
    if coder.kind == "sae":
        return {"activations": coder.d_in}
    if coder.kind == "transcoder":
        return {"activations": coder.d_in, "targets": coder.d_out}
    widths = {}
    for l in range(coder.n_layers):
        widths[f"inputs_{l}"] = coder.d_in
        widths[f"targets_{l}"] = coder.d_out
    return widths


def _check_batch(batch: dict, widths: dict[str, int], where: str = "batch") -> int:
    n = None
    for name, w in widths.items():
        if name not in batch:
            raise InputError(f"{where}: missing tensor {name!r}")
        t = batch[name]
        if t.ndim != 2 or t.shape[1] != w:
            raise InputError(
                f"{where}: tensor {name!r} has shape {list(t.shape)}, expected [N, {w}]"
            )
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise InputError(f"{where}: tensor {name!r} has {t.shape[0]} rows, expected {n}")
    return n or 0


def _first_bad_row(t: torch.Tensor) -> int | None:
    bad = ~torch.isfinite(t).all(dim=1)
    if bool(bad.any()):
        return int(bad.nonzero()[0, 0])
    return None


def iter_safetensors_batches(path: str | Path, batch_rows: int = 1024, *, coder=None,
                             names: Iterable[str] | None = None,
                             widths: dict[str, int] | None = None,
                             dtype: torch.dtype = torch.float32,
                             rename: dict[str, str] | None = None) -> Iterator[dict]:
    """Yield ``{name: tensor [b, width]}`` slices of an activations file, ``batch_rows`` at a time.

    The tensors read are ``names``, or the ones ``coder`` needs, or all tensors of the file;
    ``rename`` maps a batch name to the file's tensor name (e.g. ``activations`` → ``inputs_3``
    for the member of a set at layer 3).
    Raises InputError on a corrupted header, a missing tensor, a wrong width, an empty file,
    mismatched row counts or a row with NaN/Inf (naming the file, tensor and row).
    """
    path = Path(path)
    if batch_rows < 1:
        raise InputError(f"batch_rows must be >= 1, got {batch_rows}")
    header = read_safetensors_header(path)
    if coder is not None:
        widths = {**batch_widths(coder), **(widths or {})}
    wanted = list(names) if names is not None else list(widths or header.tensors)
    if not wanted:
        raise InputError(f"{path.name}: empty activations file (no tensors)")
    rename = rename or {}
    n_rows = None
    for name in wanted:
        if rename.get(name, name) not in header.tensors:
            raise InputError(f"{path.name}: missing tensor {rename.get(name, name)!r}")
        shape = header.tensors[rename.get(name, name)].shape
        if len(shape) != 2:
            raise InputError(f"{path.name}: tensor {rename.get(name, name)!r} has shape "
                             f"{list(shape)}, expected 2-D")
        if widths and name in widths and shape[1] != widths[name]:
            raise InputError(f"{path.name}: tensor {rename.get(name, name)!r} has width "
                             f"{shape[1]}, expected {widths[name]}")
        if n_rows is None:
            n_rows = shape[0]
        elif shape[0] != n_rows:
            raise InputError(f"{path.name}: tensor {rename.get(name, name)!r} has {shape[0]} "
                             f"rows, other tensors have {n_rows}")
    if not n_rows:
        raise InputError(f"{path.name}: empty activations file (0 rows)")
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        slices = {name: fh.get_slice(rename.get(name, name)) for name in wanted}
        for start in range(0, n_rows, batch_rows):
            stop = min(start + batch_rows, n_rows)
            batch = {}
            for name, sl in slices.items():
                t = sl[start:stop].to(dtype)
                bad = _first_bad_row(t)
                if bad is not None:
                    raise InputError(
                        f"{path.name}: tensor {rename.get(name, name)!r} row {start + bad} "
                        "contains NaN or Inf"
                    )
                batch[name] = t
            yield batch


# ------------------------------------------------------------------ accumulators
class _Acc:
    """float64 running sums for one reconstruction target and one feature block."""

    def __init__(self, d: int, m: int, device):
        f64 = dict(dtype=torch.float64, device=device)
        self.n = 0
        self.sse = torch.zeros((), **f64)
        self.sum_sq = torch.zeros((), **f64)
        self.sum_x = torch.zeros(d, **f64)
        self.sum_cos = torch.zeros((), **f64)
        self.sum_ratio = torch.zeros((), **f64)
        self.l1 = torch.zeros((), **f64)
        self.counts = torch.zeros(m, dtype=torch.int64, device=device)

    def add_recon(self, x: torch.Tensor, xh: torch.Tensor) -> None:
        self.n += x.shape[0]
        xx = (x * x).sum(1, dtype=torch.float64)
        hh = (xh * xh).sum(1, dtype=torch.float64)
        xh_dot = (x * xh).sum(1, dtype=torch.float64)
        self.sse += (x - xh).square().sum(1, dtype=torch.float64).sum()
        self.sum_sq += xx.sum()
        self.sum_x += x.sum(0, dtype=torch.float64)
        nx, nh = xx.sqrt(), hh.sqrt()
        self.sum_cos += (xh_dot / (nx.clamp_min(NORM_EPS) * nh.clamp_min(NORM_EPS))).sum()
        self.sum_ratio += (nh / nx.clamp_min(NORM_EPS)).sum()

    def add_feats(self, f: torch.Tensor, nonnegative: bool, mask_buf=None,
                  ones=None) -> torch.Tensor:
        """Count active features per feature and add Σ|f|; returns the per-feature counts.

        The counts come from a float 0/1 mask summed by a matrix-vector product (exact for
        batches below 2^24 rows): several times faster on CPU than a boolean ``sum(0)``."""
        b = f.shape[0]
        mask = torch.ne(f, 0, out=mask_buf[:b] if mask_buf is not None else None).to(f.dtype)
        ones = ones[:b] if ones is not None else f.new_ones(b)
        counts = torch.mv(mask.T, ones)
        self.counts += counts.to(torch.int64)
        rows = f.sum(1) if nonnegative else f.abs().sum(1)
        self.l1 += rows.sum(dtype=torch.float64)
        return counts

    def metrics(self) -> dict:
        n = self.n
        mse = float(self.sse) / n
        var = float(self.sum_sq) / n - float((self.sum_x / n).square().sum())
        density = (self.counts.double() / n).cpu()
        return {
            "n_rows": n,
            "mse": mse,
            "variance": var,
            "explained_variance": _ev(mse, var),
            "cossim": float(self.sum_cos) / n,
            "l2_ratio": float(self.sum_ratio) / n,
            "l0": float(self.counts.sum()) / n,
            "l1": float(self.l1) / n,
            "dead_fraction": float((density == 0).double().mean()),
            "dense_fraction": float((density > DENSE_THRESHOLD).double().mean()),
            "density": density,
        }


def _ev(mse: float, var: float) -> float:
    if var < EV_DENOM_EPS:
        return 1.0 if mse < EV_DENOM_EPS else 0.0
    return 1.0 - mse / var


@dataclass
class FidelityResult(ToDict):
    kind: str  # sae | transcoder | clt
    n_rows: int
    n_features: int  # all features (all layers for a CLT)
    mse: float
    explained_variance: float
    cossim: float
    l2_ratio: float
    l0: float
    l1: float
    dead_fraction: float
    dense_fraction: float
    variance: float  # the explained-variance denominator (pooled Σ_l var_l for a CLT)
    density: list[float] = field(repr=False, default_factory=list)
    l0_total: float | None = None  # CLT: Σ over layers of l0
    per_layer: list[dict] | None = None  # CLT: every metric per output layer
    formula_version: str = FORMULA_VERSION
    dtype: str = "float32"
    device: str = "cpu"

    def metrics(self) -> dict:
        """The scalar metrics (what a check record stores), without the density vector."""
        d = self.to_dict()
        d.pop("density")
        return d

    @property
    def density_tensor(self) -> torch.Tensor:
        return torch.tensor(self.density, dtype=torch.float64)


# ------------------------------------------------------------------ main entry point
def compute_fidelity(coder, batches: Iterable[dict], device=None, *,
                     max_batch_rows: int = 1024, sparse: bool = True) -> FidelityResult:
    """Fidelity of ``coder`` over ``batches`` (dicts of tensors, see :func:`batch_widths`).

    Batches larger than ``max_batch_rows`` are split (buffers are preallocated for that many
    rows). With ``sparse`` (default), a batch whose share of active features is at most
    ``SPARSE_MAX_DENSITY`` is decoded with an ``embedding_bag`` over the active features;
    otherwise with a dense matmul. Both give the same numbers up to float rounding.
    """
    require_coder(coder, check="fidelity")
    dev = pick_device(device)
    coder.to(dev)
    widths = batch_widths(coder)
    if isinstance(coder, CrossLayerTranscoder):
        return _clt_fidelity(coder, batches, dev, widths)
    assert isinstance(coder, SparseCoder)
    acc = _Acc(coder.d_out, coder.n_features, dev)
    dt = coder.dtype
    enc_buf = torch.empty(max_batch_rows, coder.n_features, dtype=dt, device=dev)
    dec_buf = torch.empty(max_batch_rows, coder.d_out, dtype=dt, device=dev)
    mask_buf = torch.empty(max_batch_rows, coder.n_features, dtype=dt, device=dev)
    ones = torch.ones(max_batch_rows, dtype=dt, device=dev)
    for bi, batch in enumerate(batches):
        n = _check_batch(batch, widths, f"batch {bi}")
        for start in range(0, n, max_batch_rows):
            sl = slice(start, min(start + max_batch_rows, n))
            x = batch["activations"][sl].to(dev, dt, non_blocking=True)
            y = x if coder.kind == "sae" else batch["targets"][sl].to(dev, dt, non_blocking=True)
            for name, t in (("activations", x),) + ((("targets", y),) if y is not x else ()):
                bad = _first_bad_row(t)
                if bad is not None:
                    raise InputError(f"batch {bi}: {name} row {start + bad} contains NaN or Inf")
            b = x.shape[0]
            f = coder.encode(x, out=enc_buf[:b])
            nnz = float(acc.add_feats(f, coder.nonnegative, mask_buf, ones).sum())
            if sparse and nnz <= SPARSE_MAX_DENSITY * f.numel():
                # few active features: decode from the active decoder rows only
                rows, cols = f.nonzero().unbind(1)
                yh = coder.decode_sparse(rows, cols, f[rows, cols], b, x)
            else:
                yh = coder.decode(f, x, out=dec_buf[:b])
            acc.add_recon(y, yh)
    if acc.n == 0:
        raise InputError("fidelity: no activation rows")
    m = acc.metrics()
    density = m.pop("density")
    return FidelityResult(kind=coder.kind, n_features=coder.n_features,
                          density=density.tolist(), dtype=str(dt).replace("torch.", ""),
                          device=str(dev), **m)


def _clt_fidelity(coder: CrossLayerTranscoder, batches, dev, widths) -> FidelityResult:
    L, dt = coder.n_layers, coder.dtype
    accs = [_Acc(coder.d_out, coder.n_features, dev) for _ in range(L)]
    for bi, batch in enumerate(batches):
        _check_batch(batch, widths, f"batch {bi}")
        xs, ys = [], []
        for l in range(L):
            for name, store in ((f"inputs_{l}", xs), (f"targets_{l}", ys)):
                t = batch[name].to(dev, dt, non_blocking=True)
                bad = _first_bad_row(t)
                if bad is not None:
                    raise InputError(f"batch {bi}: {name} row {bad} contains NaN or Inf")
                store.append(t)
        acts = coder.encode(xs)
        for l in range(L):
            accs[l].add_feats(acts[l], coder.nonnegative)
        for l, yh in enumerate(coder.decode(acts)):
            accs[l].add_recon(ys[l], yh)
    if accs[0].n == 0:
        raise InputError("fidelity: no activation rows")
    per = [a.metrics() for a in accs]
    density = torch.cat([p.pop("density") for p in per])
    mean = lambda k: sum(p[k] for p in per) / L  # noqa: E731
    sum_mse, sum_var = sum(p["mse"] for p in per), sum(p["variance"] for p in per)
    for l, p in enumerate(per):
        p["layer"] = l
    return FidelityResult(
        kind="clt", n_rows=accs[0].n, n_features=L * coder.n_features,
        mse=mean("mse"), explained_variance=_ev(sum_mse, sum_var),
        cossim=mean("cossim"), l2_ratio=mean("l2_ratio"), l0=mean("l0"), l1=mean("l1"),
        dead_fraction=float((density == 0).double().mean()),
        dense_fraction=float((density > DENSE_THRESHOLD).double().mean()),
        variance=sum_var, density=density.tolist(), l0_total=sum(p["l0"] for p in per),
        per_layer=per, dtype=str(dt).replace("torch.", ""), device=str(dev),
    )


def fidelity_from_files(artifact_path: str | Path, activations_path: str | Path, *,
                        expected_sha256: dict[str, str] | None = None, batch_rows: int = 1024,
                        device=None, dtype: torch.dtype = torch.float32) -> FidelityResult:
    """Load an artifact (verifying hashes when given) and stream an activations file through it."""
    coder = load_artifact(artifact_path, expected_sha256, dtype=dtype)
    batches = iter_safetensors_batches(activations_path, batch_rows, coder=coder, dtype=dtype)
    return compute_fidelity(coder, batches, device=device, max_batch_rows=batch_rows)
