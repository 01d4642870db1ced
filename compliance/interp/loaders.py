"""Load interpretability artifacts (torch) into objects with ``encode`` / ``decode``.

Every loader normalises the stored layout to one internal convention so the hot loops are
the same for all formats: ``W_enc_t [d_in, m]`` (one column per feature, as SAELens stores it;
circuit-tracer and sparsify rows are transposed), ``W_dec [m, d_out]``. Weights are cast to
float32 (or the requested wider dtype) whatever the stored dtype (bf16 included).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open

from compliance.errors import InputError
from compliance.interp.headers import (
    ArtifactInfo,
    detect_format,
    read_feature_labels,
    read_safetensors_header,
)

COMPUTE_DTYPES = (torch.float32, torch.float64)


def _load_tensors(path: Path, dtype: torch.dtype, device) -> dict[str, torch.Tensor]:
    read_safetensors_header(path)  # clear InputError on a corrupted header
    out = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            for name in fh.keys():
                out[name] = fh.get_tensor(name).to(device=device, dtype=dtype).contiguous()
    except InputError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(f"cannot read {path.name}: {exc}") from None
    for name, t in out.items():
        if not torch.isfinite(t).all():
            raise InputError(f"{path.name}: tensor {name!r} contains NaN or Inf")
    return out


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_hashes(info: ArtifactInfo, root: Path, expected: dict[str, str]) -> None:
    """Check every artifact file against ``expected`` (keys: file name, path relative to the
    artifact folder, or full path). A file with no entry or a different digest → InputError."""
    for f in info.files:
        keys = {f.name, str(f)}
        if root.is_dir():
            keys.add(str(f.relative_to(root)))
        want = next((expected[k] for k in keys if k in expected), None)
        if want is None:
            raise InputError(f"no expected SHA-256 given for {f.name}")
        if sha256_file(f) != str(want).lower():
            raise InputError(f"hash mismatch: {f.name}")


class SparseCoder:
    """One-layer SAE or transcoder. ``kind`` is ``"sae"`` or ``"transcoder"``."""

    def __init__(self, info: ArtifactInfo, *, W_enc_t, b_enc, W_dec, b_dec, pre_bias=None,
                 threshold=None, activation="relu", k=None, W_skip=None, gate=None,
                 norm="none", norm_out=True, kind=None):
        self.info = info
        self.kind = kind or info.kind_hint
        self.W_enc_t, self.b_enc, self.W_dec, self.b_dec = W_enc_t, b_enc, W_dec, b_dec
        self.pre_bias, self.threshold, self.activation, self.k = pre_bias, threshold, activation, k
        self.W_skip = W_skip
        # gated SAEs: (W_mag_t [d_in, m], b_mag [m]); b_enc is then the gate bias
        self.W_mag_t, self.b_mag = gate if gate is not None else (None, None)
        # SAELens run-time normalisation: "constant_norm_rescale" | "layer_norm" (in, and out
        # unless norm_out is False, as for SAELens transcoders)
        self.norm, self.norm_out = norm, norm_out
        # JumpReLU as circuit-tracer computes it (x·[x>θ]) can output negative values when θ<0
        self.nonnegative = activation != "abstopk" and (
            activation != "jumprelu" or bool((threshold >= 0).all()))

    # ----------------------------------------------------------------- shapes
    @property
    def d_in(self) -> int:
        return self.W_enc_t.shape[0]

    @property
    def n_features(self) -> int:
        return self.W_enc_t.shape[1]

    @property
    def d_out(self) -> int:
        return self.W_dec.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc_t.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc_t.device

    def to(self, device) -> "SparseCoder":
        for name in ("W_enc_t", "b_enc", "W_dec", "b_dec", "pre_bias", "threshold", "W_skip",
                     "W_mag_t", "b_mag"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self

    def flops_per_row(self) -> int:
        f = 2 * self.d_in * self.n_features + 2 * self.n_features * self.d_out
        f += 2 * self.d_in * self.n_features if self.W_mag_t is not None else 0
        return f + (2 * self.d_in * self.d_out if self.W_skip is not None else 0)

    # ----------------------------------------------------------------- maths
    def _norm_in(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple | None]:
        """SAELens' run-time normalisation of the input, and what undoing it needs."""
        if self.norm == "constant_norm_rescale":
            coeff = (self.d_in ** 0.5) / x.norm(dim=-1, keepdim=True)
            return x * coeff, (coeff,)
        if self.norm == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            xc = x - mu
            std = xc.std(dim=-1, keepdim=True)
            return xc / (std + 1e-5), (mu, std)
        return x, None

    def _norm_out(self, y: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        if self.norm == "none" or not self.norm_out:
            return y
        if x is None:
            raise InputError(f"this artifact normalises its input ({self.norm}): decode needs x")
        _, state = self._norm_in(x.to(self.dtype))
        if self.norm == "constant_norm_rescale":
            return y.div_(state[0])
        mu, std = state
        return y.mul_(std).add_(mu)

    def encode(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Feature activations ``f [N, m]`` (``out``: optional preallocated buffer)."""
        x = x.to(self.dtype)
        x, _ = self._norm_in(x)
        if self.pre_bias is not None:
            x = x - self.pre_bias
        pre = torch.addmm(self.b_enc, x, self.W_enc_t, out=out)
        if self.activation == "relu":
            return pre.relu_()
        if self.activation == "jumprelu":  # circuit-tracer: x · [x > θ]
            return pre.mul_(pre > self.threshold)
        if self.activation == "jumprelu_relu":  # SAELens: relu(x) · [x > θ]
            mask = pre > self.threshold
            return pre.relu_().mul_(mask)
        if self.activation == "topk":  # k largest pre-activations, then ReLU
            vals, idx = pre.topk(self.k, dim=1, sorted=False)
            return pre.zero_().scatter_(1, idx, vals.relu_())
        if self.activation == "abstopk":  # k largest |pre-activations|, signed values kept
            idx = pre.abs().topk(self.k, dim=1, sorted=False).indices
            vals = pre.gather(1, idx)
            return pre.zero_().scatter_(1, idx, vals)
        if self.activation == "groupmax":  # sparsify: ReLU, then the max of each of k groups
            pre.relu_()
            vals, idx = pre.view(pre.shape[0], self.k, -1).max(dim=-1)
            idx += torch.arange(0, self.n_features, self.n_features // self.k, device=pre.device)
            return pre.zero_().scatter_(1, idx, vals)
        if self.activation == "gated":  # [gate pre > 0] · relu(magnitude pre)
            mask = pre > 0
            mag = torch.addmm(self.b_mag, x, self.W_mag_t).relu_()
            return pre.copy_(mag).mul_(mask)
        raise AssertionError(self.activation)

    def decode(self, f: torch.Tensor, x: torch.Tensor | None = None,
               out: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction ``[N, d_out]``; ``x`` (the input) is needed for skip connections
        and for undoing a run-time normalisation."""
        y = self._norm_out(torch.addmm(self.b_dec, f, self.W_dec, out=out), x)
        if self.W_skip is not None:
            if x is None:
                raise InputError("this transcoder has a skip connection: decode needs the input x")
            y.addmm_(x.to(self.dtype), self.W_skip.T)
        return y

    def decode_sparse(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int,
                      x: torch.Tensor | None = None) -> torch.Tensor:
        """Decode from the active entries only (``f[rows, cols] = vals``, rows sorted):
        an ``embedding_bag`` over the active decoder rows instead of a dense ``f @ W_dec``."""
        if rows.numel() == 0:
            y = self.b_dec.expand(n, -1).clone()
        else:
            per_row = torch.bincount(rows, minlength=n)
            offsets = per_row.cumsum(0).sub_(per_row)
            y = F.embedding_bag(cols, self.W_dec, offsets, mode="sum", per_sample_weights=vals)
            y += self.b_dec
        y = self._norm_out(y, x)
        if self.W_skip is not None:
            if x is None:
                raise InputError("this transcoder has a skip connection: decode needs the input x")
            y.addmm_(x.to(self.dtype), self.W_skip.T)
        return y

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), x)

    def decoder_directions(self) -> torch.Tensor:
        return self.W_dec

    def encoder_directions(self) -> torch.Tensor:
        return self.W_enc_t.T


def _load_saelens(info: ArtifactInfo, t: dict, kind: str | None) -> SparseCoder:
    e = info.extra
    act = e.get("activation") or {"standard": "relu", "jumprelu": "jumprelu_relu",
                                   "topk": "topk"}[info.architecture]
    W_enc_t, b_enc, W_dec = t["W_enc"], t.get("b_enc"), t["W_dec"]
    if e.get("rescale_acts_by_decoder_norm"):
        # SAELens: pre · ‖W_dec row‖ before the top-k, f / ‖W_dec row‖ before decoding
        norms = W_dec.norm(dim=-1)
        W_enc_t, b_enc, W_dec = W_enc_t * norms, b_enc * norms, W_dec / norms[:, None]
    gate = None
    if act == "gated":
        b_enc = t["b_gate"]
        gate = ((t["W_enc"] * t["r_mag"].exp()).contiguous(), t["b_mag"])
    return SparseCoder(
        info, W_enc_t=W_enc_t.contiguous(), b_enc=b_enc, W_dec=W_dec.contiguous(), b_dec=t["b_dec"],
        pre_bias=t["b_dec"] if e.get("apply_b_dec_to_input") else None,
        threshold=t.get("threshold"), activation=act, k=e.get("k"), W_skip=t.get("W_skip"),
        gate=gate, norm=e.get("normalize_activations") or "none",
        norm_out=info.kind_hint == "sae", kind=kind,
    )


def _load_npz(path: Path, dtype: torch.dtype, device) -> dict[str, torch.Tensor]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: torch.from_numpy(np.asarray(z[k])).to(device=device, dtype=dtype).contiguous()
                   for k in z.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path.name}: {exc}") from None
    for name, t in out.items():
        if not torch.isfinite(t).all():
            raise InputError(f"{path.name}: array {name!r} contains NaN or Inf")
    return out


def _load_dictionary_learning(info: ArtifactInfo, dtype, device) -> SparseCoder:
    path = info.files[1]
    try:  # never a full unpickle: a state dict of tensors only
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and torch raise many types
        raise InputError(f"cannot read {path.name} with weights_only=True: {exc}") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"{path.name}: not a state dict of tensors")
    cls, want = info.extra["dict_class"], set(info.extra["keys"])
    unknown = sorted(set(sd) - want)
    if unknown:
        raise InputError(f"{path.name}: unknown tensor {unknown[0]!r} in a dictionary_learning "
                         f"{cls} state dict (it stores only {', '.join(sorted(want))}); "
                         "refusing rather than ignoring it")
    missing = sorted(want - set(sd))
    if missing:
        raise InputError(f"{path.name}: missing tensor {missing[0]!r} of a {cls}")
    t = {k: v.to(device=device, dtype=dtype).contiguous() for k, v in sd.items()}
    for name, v in t.items():
        if not torch.isfinite(v).all():
            raise InputError(f"{path.name}: tensor {name!r} contains NaN or Inf")
    d, m = info.d_in, info.d_sae
    if cls == "JumpReluAutoEncoder":
        W_enc_t, W_dec = t["W_enc"], t["W_dec"]
    else:
        W_enc_t, W_dec = t["encoder.weight"].T.contiguous(), t["decoder.weight"].T.contiguous()
    if tuple(W_enc_t.shape) != (d, m) or tuple(W_dec.shape) != (m, d):
        raise InputError(f"{path.name}: encoder/decoder shapes {list(W_enc_t.shape)}, "
                         f"{list(W_dec.shape)} do not match activation_dim {d}, dict_size {m}")
    if cls == "AutoEncoder":
        return SparseCoder(info, W_enc_t=W_enc_t, b_enc=t["encoder.bias"], W_dec=W_dec,
                           b_dec=t["bias"], pre_bias=t["bias"])
    if cls == "AutoEncoderNew":
        return SparseCoder(info, W_enc_t=W_enc_t, b_enc=t["encoder.bias"], W_dec=W_dec,
                           b_dec=t["decoder.bias"])
    if cls == "GatedAutoEncoder":
        gate = ((W_enc_t * t["r_mag"].exp()).contiguous(), t["mag_bias"])
        return SparseCoder(info, W_enc_t=W_enc_t, b_enc=t["gate_bias"], W_dec=W_dec,
                           b_dec=t["decoder_bias"], pre_bias=t["decoder_bias"],
                           activation="gated", gate=gate)
    if cls == "JumpReluAutoEncoder":
        return SparseCoder(info, W_enc_t=W_enc_t, b_enc=t["b_enc"], W_dec=W_dec, b_dec=t["b_dec"],
                           threshold=t["threshold"], activation="jumprelu_relu")
    raise InputError(f"{path.name}: dictionary class {cls!r} cannot be loaded")


class CrossLayerTranscoder:
    """circuit-tracer CLT: features read at layer i write to every layer l ≥ i."""

    kind = "clt"

    def __init__(self, info: ArtifactInfo, W_enc_t, b_enc, b_dec, threshold, W_dec):
        self.info = info
        self.W_enc_t, self.b_enc, self.b_dec, self.threshold = W_enc_t, b_enc, b_dec, threshold
        self.W_dec = W_dec  # list of [m, L-i, d]
        self.W_dec_flat = [w.reshape(w.shape[0], -1) for w in W_dec]
        self.nonnegative = threshold is None or all(bool((t >= 0).all()) for t in threshold)

    @property
    def n_layers(self) -> int:
        return len(self.W_enc_t)

    @property
    def d_in(self) -> int:
        return self.W_enc_t[0].shape[0]

    d_out = d_in

    @property
    def n_features(self) -> int:  # per layer
        return self.W_enc_t[0].shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc_t[0].dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc_t[0].device

    def to(self, device) -> "CrossLayerTranscoder":
        for name in ("W_enc_t", "b_enc", "b_dec", "threshold", "W_dec", "W_dec_flat"):
            ts = getattr(self, name)
            if ts is not None:
                setattr(self, name, [t.to(device) for t in ts])
        return self

    def flops_per_row(self) -> int:
        d, m, L = self.d_in, self.n_features, self.n_layers
        return sum(2 * d * m + 2 * m * (L - i) * d for i in range(L))

    def encode_layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        pre = torch.addmm(self.b_enc[i], x.to(self.dtype), self.W_enc_t[i])
        if self.threshold is None:
            return pre.relu_()
        return pre.mul_(pre > self.threshold[i])

    def encode(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.encode_layer(i, x) for i, x in enumerate(xs)]

    def contributions(self, i: int, a: torch.Tensor) -> torch.Tensor:
        """What layer-i features write to layers i..L-1: ``[N, L-i, d]``."""
        return (a @ self.W_dec_flat[i]).view(a.shape[0], self.n_layers - i, self.d_in)

    def decode(self, acts: list[torch.Tensor]) -> list[torch.Tensor]:
        """``ŷ_l = Σ_{i≤l} a_i · W_dec_i[:, l-i, :] + b_dec_l`` for every layer l."""
        n = acts[0].shape[0]
        ys = [self.b_dec[l].expand(n, -1).clone() for l in range(self.n_layers)]
        for i, a in enumerate(acts):
            c = self.contributions(i, a)
            for j in range(self.n_layers - i):
                ys[i + j] += c[:, j, :]
        return ys

    def reconstruct(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.decode(self.encode(xs))

    def decoder_directions(self, i: int) -> torch.Tensor:
        return self.W_dec_flat[i]

    def encoder_directions(self, i: int) -> torch.Tensor:
        return self.W_enc_t[i].T


@dataclass
class LinearProbe:
    info: ArtifactInfo
    weight: torch.Tensor  # [n_classes or 1, d]
    bias: torch.Tensor | None
    kind: str = "probe"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        y = x.to(self.weight.dtype) @ self.weight.T
        return y if self.bias is None else y + self.bias


@dataclass
class AttributionBaseline:
    info: ArtifactInfo
    baseline: torch.Tensor  # [d_in] or [n, d_in]
    kind: str = "attribution_baseline"


@dataclass
class FeatureLabels:
    info: ArtifactInfo
    labels: dict[int, str]
    kind: str = "feature_labels"


Loaded = SparseCoder | CrossLayerTranscoder | LinearProbe | AttributionBaseline | FeatureLabels


def _get(t: dict, name: str, i: int | None = None):
    if i is not None and f"{name}_{i}" in t:
        return t[f"{name}_{i}"]
    return t.get(name)


def load_artifact(path: str | Path, expected_sha256: dict[str, str] | None = None, *,
                  dtype: torch.dtype = torch.float32, device=None, kind: str | None = None) -> Loaded:
    """Detect the format, verify hashes (when given), and load the weights.

    ``dtype`` is the compute dtype (float32 or float64), whatever the stored dtype. ``kind``:
    the registered kind, for formats whose files do not say (a Gemma Scope ``params.npz`` is an
    SAE or a transcoder).
    """
    if dtype not in COMPUTE_DTYPES:
        raise InputError(f"compute dtype must be float32 or float64, not {dtype}")
    path = Path(path)
    info = detect_format(path)
    if expected_sha256 is not None:
        verify_hashes(info, path, expected_sha256)
    device = torch.device(device) if device is not None else torch.device("cpu")
    fmt = info.format
    if kind is not None and kind != info.kind_hint and kind not in info.extra.get("kinds", ()):
        raise InputError(f"{path.name}: files look like a {info.kind_hint} ({fmt}), not a {kind}")
    if fmt == "feature_labels":
        return FeatureLabels(info, read_feature_labels(path))
    if fmt == "probe":
        t = _load_tensors(info.files[-1], dtype, device)
        return LinearProbe(info, t["weight"], t.get("bias"))
    if fmt == "attribution_baseline":
        t = _load_tensors(info.files[-1], dtype, device)
        return AttributionBaseline(info, t["baseline"])
    if fmt == "saelens":
        return _load_saelens(info, _load_tensors(info.files[1], dtype, device), kind)
    if fmt == "circuit_tracer_transcoder":
        t = _load_tensors(info.files[0], dtype, device)
        thr = t.get(info.extra.get("threshold_key") or "threshold")
        if thr is not None and thr.ndim == 0:
            thr = thr.expand(t["b_enc"].shape).contiguous()
        return SparseCoder(
            info, W_enc_t=t["W_enc"].T.contiguous(), b_enc=t["b_enc"], W_dec=t["W_dec"],
            b_dec=t["b_dec"], pre_bias=None, threshold=thr,
            activation="jumprelu" if thr is not None else "relu", W_skip=t.get("W_skip"),
        )
    if fmt == "sparsify":
        t = _load_tensors(info.files[1], dtype, device)
        return SparseCoder(
            info, W_enc_t=t["encoder.weight"].T.contiguous(), b_enc=t["encoder.bias"],
            W_dec=t["W_dec"], b_dec=t["b_dec"],
            pre_bias=None if info.extra["transcode"] else t["b_dec"],
            activation=info.extra.get("activation", "topk"), k=info.extra["k"],
            W_skip=t.get("W_skip"),
        )
    if fmt == "gemma_scope":
        t = _load_npz(info.files[0], dtype, device)
        return SparseCoder(info, W_enc_t=t["W_enc"], b_enc=t["b_enc"], W_dec=t["W_dec"],
                           b_dec=t["b_dec"], threshold=t["threshold"], activation="jumprelu_relu",
                           kind=kind)
    if fmt == "dictionary_learning":
        return _load_dictionary_learning(info, dtype, device)
    if fmt == "circuit_tracer_clt":
        W_enc_t, b_enc, b_dec, thr, W_dec = [], [], [], [], []
        for i in range(info.n_layers):
            te = _load_tensors(info.files[2 * i], dtype, device)
            td = _load_tensors(info.files[2 * i + 1], dtype, device)
            W_enc_t.append(_get(te, "W_enc", i).T.contiguous())
            b_enc.append(_get(te, "b_enc", i))
            b_dec.append(_get(te, "b_dec", i))
            thr.append(_get(te, "threshold", i))
            W_dec.append(_get(td, "W_dec", i))
        return CrossLayerTranscoder(info, W_enc_t, b_enc, b_dec,
                                    None if thr[0] is None else thr, W_dec)
    raise InputError(f"{path.name}: format {fmt!r} cannot be loaded")


def require_coder(obj, kinds=("sae", "transcoder", "clt"), check: str = "this check"):
    """Raise InputError when ``obj`` is an artifact kind ``check`` does not apply to."""
    kind = getattr(obj, "kind", type(obj).__name__)
    if kind not in kinds:
        raise InputError(f"{check} does not apply to a {kind} artifact (needs {', '.join(kinds)})")
    return obj
