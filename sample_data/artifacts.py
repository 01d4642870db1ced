"""Train interpretability artifacts on real activations and write them in ecosystem formats.

- SAELens SAEs (``standard`` ReLU with L1, ``topk``, ``jumprelu``): folder with ``cfg.json`` and
  ``sae_weights.safetensors`` (``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec``,
  ``threshold`` for JumpReLU).
- circuit-tracer per-layer transcoders: ``layer_{i}.safetensors`` with ``W_enc [d_tc, d_model]``,
  ``b_enc``, ``W_dec [d_tc, d_model]``, ``b_dec`` (the encoder does not subtract ``b_dec``).
- circuit-tracer cross-layer transcoder: ``W_enc_{i}.safetensors`` (``W_enc_{i}``, ``b_enc_{i}``,
  ``b_dec_{i}``) and ``W_dec_{i}.safetensors`` (``W_dec_{i} [d_tc, L-i, d_model]``).
- linear probe (``probe.safetensors`` + ``cfg.json``), attribution baseline
  (``baseline.safetensors`` + ``cfg.json``) and feature labels (``labels.json``).

Every trainer is plain torch with a fixed seed; after gradient training the decoder (and decoder
bias) of SAEs and transcoders is refitted by least squares on the training activations with the
encoder frozen — the same model class, just the optimal decoder for its features.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .models import save_canonical


def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    save_canonical(tensors, path, metadata)


def _write_json(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- SAEs
def sae_encode(x: torch.Tensor, p: dict, arch: str, k: int | None, apply_b_dec: bool) -> torch.Tensor:
    """SAELens semantics: pre = (x - b_dec?) @ W_enc + b_enc; ReLU / TopK-then-ReLU / JumpReLU (strict >)."""
    xin = x - p["b_dec"] if apply_b_dec else x
    pre = xin @ p["W_enc"] + p["b_enc"]
    if arch == "standard":
        return torch.relu(pre)
    if arch == "topk":
        kth = pre.topk(k, dim=-1).values[:, -1:]  # keep the k largest pre-activations, then ReLU
        return torch.relu(pre) * (pre >= kth)
    if arch == "jumprelu":
        return torch.relu(pre) * (pre > p["threshold"])
    raise ValueError(arch)


def _refit_decoder(f: torch.Tensor, target: torch.Tensor, old: torch.Tensor, ridge: float = 1e-4
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares target ≈ f @ W_dec + b_dec (float64, tiny ridge on W_dec only).

    Features that never fire on the training activations keep their old decoder row ``old``.
    """
    f64, t64 = f.double(), target.double()
    fm, tm = f64.mean(0), t64.mean(0)
    fc, tc = f64 - fm, t64 - tm
    gram = fc.T @ fc + ridge * fc.shape[0] * torch.eye(fc.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, fc.T @ tc)
    b = tm - fm @ w
    dead = (f != 0).sum(0) == 0
    w[dead] = old[dead].double()
    return w.float(), b.float()


def train_sae(acts: torch.Tensor, *, d_sae: int, arch: str, seed: int, k: int | None = None,
              l1: float = 3e-3, steps: int = 1500, lr: float = 3e-3, batch: int = 1024,
              apply_b_dec_to_input: bool = True, jump_quantile: float = 0.25,
              refit: bool = True) -> dict[str, torch.Tensor]:
    """Train an SAE on ``acts [N, d_in]``; returns SAELens-named tensors."""
    g = torch.Generator().manual_seed(seed)
    n, d = acts.shape
    scale = acts.std(0).mean()
    w_dec = torch.randn(d_sae, d, generator=g)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True) * 0.1
    p = {
        "W_enc": w_dec.T.clone().requires_grad_(True),
        "b_enc": torch.zeros(d_sae, requires_grad=True),
        "W_dec": w_dec.clone().requires_grad_(True),
        "b_dec": acts.mean(0).clone().requires_grad_(True),
    }
    opt = torch.optim.Adam(p.values(), lr=lr)
    train_arch = "topk" if arch == "topk" else "standard"  # JumpReLU: thresholds set after L1 training
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=g)
        x = acts[idx]
        f = sae_encode(x, p, train_arch, k, apply_b_dec_to_input)
        xh = f @ p["W_dec"] + p["b_dec"]
        loss = ((x - xh) ** 2).sum(-1).mean() / (scale ** 2 * d)
        if train_arch == "standard":
            loss = loss + l1 * (f * p["W_dec"].norm(dim=1)).sum(-1).mean() / scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out = {kk: v.detach().clone() for kk, v in p.items()}
    with torch.no_grad():
        if arch == "jumprelu":  # a feature fires only above the low quantile of its active values
            pre = ((acts - out["b_dec"]) if apply_b_dec_to_input else acts) @ out["W_enc"] + out["b_enc"]
            pos = torch.where(pre > 0, pre, torch.full_like(pre, float("nan")))
            thr = torch.nanquantile(pos, jump_quantile, dim=0)  # per feature, over positive values
            out["threshold"] = torch.nan_to_num(thr, nan=0.0)
        if not refit:
            return out
        f = sae_encode(acts, out, arch, k, apply_b_dec_to_input)
        w, b = _refit_decoder(f, acts, out["W_dec"])
        if apply_b_dec_to_input:  # keep pre-activations unchanged under the new b_dec
            out["b_enc"] = out["b_enc"] + (b - out["b_dec"]) @ out["W_enc"]
        out["W_dec"], out["b_dec"] = w, b
    return out


def write_sae(folder: Path, params: dict, *, arch: str, hook_name: str, model_name: str,
              k: int | None = None, apply_b_dec_to_input: bool = True, extra_cfg: dict | None = None) -> None:
    d_in, d_sae = params["W_enc"].shape
    cfg = {"architecture": arch, "d_in": int(d_in), "d_sae": int(d_sae), "dtype": "float32",
           "apply_b_dec_to_input": bool(apply_b_dec_to_input), "hook_name": hook_name,
           "model_name": model_name, "normalize_activations": "none", "device": "cpu",
           "metadata": {"hook_name": hook_name, "model_name": model_name}}
    if arch == "topk":
        cfg["k"] = int(k)
    cfg.update(extra_cfg or {})
    names = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if arch == "jumprelu" else [])
    _save({n: params[n] for n in names}, folder / "sae_weights.safetensors")
    _write_json(cfg, folder / "cfg.json")


# ---------------------------------------------------------------- transcoders
def train_transcoder(inp: torch.Tensor, target: torch.Tensor, *, d_tc: int, seed: int, l1: float = 2e-3,
                     steps: int = 1500, lr: float = 3e-3, batch: int = 1024) -> dict[str, torch.Tensor]:
    """circuit-tracer layout: f = relu(x @ W_enc.T + b_enc); y_hat = f @ W_dec + b_dec."""
    g = torch.Generator().manual_seed(seed)
    n, d = inp.shape
    d_out = target.shape[1]
    w_enc = torch.randn(d_tc, d, generator=g) / d ** 0.5
    p = {"W_enc": w_enc.requires_grad_(True), "b_enc": torch.zeros(d_tc, requires_grad=True),
         "W_dec": (torch.randn(d_tc, d_out, generator=g) * 0.01).requires_grad_(True),
         "b_dec": target.mean(0).clone().requires_grad_(True)}
    opt = torch.optim.Adam(p.values(), lr=lr)
    scale = target.std(0).mean()
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=g)
        f = torch.relu(inp[idx] @ p["W_enc"].T + p["b_enc"])
        yh = f @ p["W_dec"] + p["b_dec"]
        loss = ((target[idx] - yh) ** 2).sum(-1).mean() / (scale ** 2 * d_out)
        loss = loss + l1 * (f * p["W_dec"].norm(dim=1)).sum(-1).mean() / scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out = {kk: v.detach().clone() for kk, v in p.items()}
    with torch.no_grad():
        f = torch.relu(inp @ out["W_enc"].T + out["b_enc"])
        out["W_dec"], out["b_dec"] = _refit_decoder(f, target, out["W_dec"])
    return out


def write_transcoder(path: Path, params: dict, *, layer: int, hook_in: str, hook_out: str) -> None:
    _save({n: params[n] for n in ["W_enc", "b_enc", "W_dec", "b_dec"]}, path,
          metadata={"format": "circuit-tracer-transcoder", "layer": str(layer),
                    "feature_input_hook": hook_in, "feature_output_hook": hook_out})


def train_clt(inputs: list[torch.Tensor], targets: list[torch.Tensor], *, d_tc: int, seed: int,
              l1: float = 2e-3, steps: int = 1500, lr: float = 3e-3, batch: int = 1024) -> dict[str, torch.Tensor]:
    """Cross-layer transcoder: y_l = sum_{i<=l} relu(x_i W_enc_i^T + b_enc_i) W_dec_i[:, l-i] + b_dec_l."""
    g = torch.Generator().manual_seed(seed)
    L = len(inputs)
    n, d = inputs[0].shape
    p = {}
    for i in range(L):
        p[f"W_enc_{i}"] = (torch.randn(d_tc, d, generator=g) / d ** 0.5).requires_grad_(True)
        p[f"b_enc_{i}"] = torch.zeros(d_tc, requires_grad=True)
        p[f"b_dec_{i}"] = targets[i].mean(0).clone().requires_grad_(True)
        p[f"W_dec_{i}"] = (torch.randn(d_tc, L - i, d, generator=g) * 0.01).requires_grad_(True)
    opt = torch.optim.Adam(p.values(), lr=lr)
    scales = [t.std(0).mean() for t in targets]

    def forward(xs):
        acts = [torch.relu(xs[i] @ p[f"W_enc_{i}"].T + p[f"b_enc_{i}"]) for i in range(L)]
        ys = [sum(acts[i] @ p[f"W_dec_{i}"][:, l - i, :] for i in range(l + 1)) + p[f"b_dec_{l}"] for l in range(L)]
        return acts, ys

    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=g)
        acts, ys = forward([x[idx] for x in inputs])
        loss = 0.0
        for l in range(L):
            loss = loss + ((targets[l][idx] - ys[l]) ** 2).sum(-1).mean() / (scales[l] ** 2 * d)
            loss = loss + l1 * (acts[l] * p[f"W_dec_{l}"].flatten(1).norm(dim=1)).sum(-1).mean() / scales[l]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out = {kk: v.detach().clone() for kk, v in p.items()}
    with torch.no_grad():  # joint least-squares refit of all decoders writing to layer l
        acts = [torch.relu(inputs[i] @ out[f"W_enc_{i}"].T + out[f"b_enc_{i}"]) for i in range(L)]
        for l in range(L):
            f = torch.cat([acts[i] for i in range(l + 1)], dim=1)
            old = torch.cat([out[f"W_dec_{i}"][:, l - i, :] for i in range(l + 1)], dim=0)
            w, b = _refit_decoder(f, targets[l], old)
            for i in range(l + 1):
                out[f"W_dec_{i}"][:, l - i, :] = w[i * d_tc:(i + 1) * d_tc]
            out[f"b_dec_{l}"] = b
    return out


def write_clt(folder: Path, params: dict, n_layers: int) -> None:
    for i in range(n_layers):
        _save({f"W_enc_{i}": params[f"W_enc_{i}"], f"b_enc_{i}": params[f"b_enc_{i}"],
               f"b_dec_{i}": params[f"b_dec_{i}"]}, folder / f"W_enc_{i}.safetensors")
        _save({f"W_dec_{i}": params[f"W_dec_{i}"]}, folder / f"W_dec_{i}.safetensors")


# ---------------------------------------------------------------- probe, baseline
def train_probe(acts: torch.Tensor, target: torch.Tensor, *, seed: int, steps: int = 300,
                l2: float = 1e-3) -> dict[str, torch.Tensor]:
    """L2-regularised logistic regression (full-batch L-BFGS) on activations."""
    torch.manual_seed(seed)
    mu, sd = acts.mean(0), acts.std(0).clamp_min(1e-6)
    z = (acts - mu) / sd
    w = torch.zeros(acts.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    lossf = torch.nn.BCEWithLogitsLoss()

    def closure():
        opt.zero_grad()
        loss = lossf(z @ w + b, target) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():  # fold the standardisation into the weights: logit = acts @ W.T + b
        weight = (w / sd)[None, :]
        bias = b - (w * mu / sd).sum()
    return {"weight": weight.detach(), "bias": bias.detach().reshape(1)}


def write_probe(folder: Path, params: dict, cfg: dict) -> None:
    _save(params, folder / "probe.safetensors")
    _write_json(cfg, folder / "cfg.json")


def write_baseline(folder: Path, baseline: torch.Tensor, cfg: dict) -> None:
    _save({"baseline": baseline}, folder / "baseline.safetensors")
    _write_json(cfg, folder / "cfg.json")


# ---------------------------------------------------------------- feature labels
def label_features(feats: np.ndarray, inputs: np.ndarray, feature_names: list[str],
                   min_density: float = 1e-3) -> dict[str, str]:
    """Label each feature by the encoded input it co-varies with most (Pearson r of activations).

    Numeric inputs give "high X"/"low X"; one-hot inputs give "X is V" / "X is not V".
    Features that never fire get "dead feature"; weakly explained ones say so.
    """
    density = (feats != 0).mean(0)
    f = feats - feats.mean(0)
    xi = inputs - inputs.mean(0)
    denom = np.sqrt((f ** 2).sum(0))[:, None] * np.sqrt((xi ** 2).sum(0))[None, :]
    corr = (f.T @ xi) / np.where(denom == 0, np.inf, denom)
    labels = {}
    for i in range(feats.shape[1]):
        if density[i] < min_density:
            labels[str(i)] = "dead feature"
            continue
        j = int(np.argmax(np.abs(corr[i])))
        r = corr[i, j]
        name = feature_names[j]
        if "=" in name:
            col, val = name.split("=", 1)
            val = "unseen category" if val == "__other__" else val
            text = f"{col} is {val}" if r > 0 else f"{col} is not {val}"
        else:
            text = f"{'high' if r > 0 else 'low'} {name.replace('_', ' ')}"
        if abs(r) < 0.3:
            text = f"mixed (weakly: {text})"
        labels[str(i)] = text
    return labels
