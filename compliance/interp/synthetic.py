"""Write small random artifacts in every supported on-disk format (tests, demos, benches).

Arrays are generated with numpy and returned, so a test can check loaders against its own
independent reference computation. Nothing here imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def _w(rng, *shape, scale=None):
    scale = scale if scale is not None else 1.0 / np.sqrt(shape[0])
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def write_saelens(folder: str | Path, rng: np.random.Generator, d_in: int, d_sae: int, *,
                  architecture: str = "standard", k: int | None = None,
                  apply_b_dec_to_input: bool = True, d_out: int | None = None,
                  skip: bool = False, hook_name: str = "blocks.0.hook_resid_pre",
                  hook_name_out: str | None = None) -> dict[str, np.ndarray]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    do = d_out if d_out is not None else d_in
    t = {
        "W_enc": _w(rng, d_in, d_sae),
        "b_enc": _w(rng, d_sae, scale=0.1),
        "W_dec": _w(rng, d_sae, do),
        "b_dec": _w(rng, do, scale=0.1),
    }
    if architecture == "jumprelu":
        t["threshold"] = np.abs(_w(rng, d_sae, scale=0.3))
    if skip:
        t["W_skip"] = _w(rng, do, d_in, scale=0.1 / np.sqrt(d_in))
    save_file(t, str(folder / "sae_weights.safetensors"))
    arch_name = architecture
    if d_out is not None:  # SAELens 6 names: transcoder, skip_transcoder, jumprelu_transcoder
        base = "" if architecture == "standard" else architecture + "_"
        arch_name = base + ("skip_transcoder" if skip else "transcoder")
    cfg = {"architecture": arch_name,
           "d_in": d_in, "d_sae": d_sae, "apply_b_dec_to_input": apply_b_dec_to_input,
           "normalize_activations": "none", "dtype": "float32",
           "metadata": {"hook_name": hook_name}}
    if architecture == "topk":
        cfg["k"] = k
    if d_out is not None:
        cfg["d_out"] = d_out
        cfg["hook_name_out"] = hook_name_out or hook_name.replace("hook_resid_pre", "hook_mlp_out")
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return t


def write_circuit_tracer_transcoder(path: str | Path, rng: np.random.Generator, d_model: int,
                                    d_tc: int, *, d_out: int | None = None,
                                    jumprelu: bool = False, skip: bool = False,
                                    dtype=np.float32,
                                    threshold_key: str = "threshold") -> dict[str, np.ndarray]:
    do = d_out if d_out is not None else d_model
    t = {
        "W_enc": _w(rng, d_tc, d_model, scale=1 / np.sqrt(d_model)),
        "b_enc": _w(rng, d_tc, scale=0.1),
        "W_dec": _w(rng, d_tc, do),
        "b_dec": _w(rng, do, scale=0.1),
    }
    if jumprelu:
        t[threshold_key] = _w(rng, d_tc, scale=0.3)  # signed on purpose: x·[x>θ] may be < 0
    if skip:
        t["W_skip"] = _w(rng, do, d_model, scale=0.1 / np.sqrt(d_model))
    save_file({k: v.astype(dtype) for k, v in t.items()}, str(path))
    return t


def write_circuit_tracer_set(folder: str | Path, rng: np.random.Generator, n_layers: int,
                             d_model: int, d_tc: int, *, jumprelu: bool = True, skip: bool = False,
                             config: bool = True) -> list[dict[str, np.ndarray]]:
    """circuit-tracer's on-disk transcoder set: ``layer_{i}.safetensors`` as
    ``TranscoderSet.to_safetensors`` writes them (threshold under ``activation_function.threshold``)
    and the ``config.yaml`` its caching helpers write."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = [write_circuit_tracer_transcoder(folder / f"layer_{i}.safetensors", rng, d_model, d_tc,
                                              jumprelu=jumprelu, skip=skip,
                                              threshold_key="activation_function.threshold")
              for i in range(n_layers)]
    if config:
        (folder / "config.yaml").write_text(
            "feature_input_hook: hook_resid_mid\nfeature_output_hook: hook_mlp_out\n"
            "model_kind: transcoder_set\nmodel_name: synthetic\nscan: synthetic\n")
    return layers


def write_clt(folder: str | Path, rng: np.random.Generator, n_layers: int, d_model: int,
              d_tc: int, *, jumprelu: bool = False) -> dict[str, np.ndarray]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n_layers):
        enc = {
            f"W_enc_{i}": _w(rng, d_tc, d_model, scale=1 / np.sqrt(d_model)),
            f"b_enc_{i}": _w(rng, d_tc, scale=0.1),
            f"b_dec_{i}": _w(rng, d_model, scale=0.1),
        }
        if jumprelu:
            enc[f"threshold_{i}"] = np.abs(_w(rng, d_tc, scale=0.2))
        dec = {f"W_dec_{i}": _w(rng, d_tc, n_layers - i, d_model, scale=1 / np.sqrt(d_tc))}
        save_file(enc, str(folder / f"W_enc_{i}.safetensors"))
        save_file(dec, str(folder / f"W_dec_{i}.safetensors"))
        out |= enc | dec
    return out


def write_sparsify(folder: str | Path, rng: np.random.Generator, d_in: int, *, k: int,
                   expansion_factor: int = 4, num_latents: int = 0, transcode: bool = False,
                   d_out: int | None = None) -> dict[str, np.ndarray]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    m = num_latents or d_in * expansion_factor
    do = d_out if d_out is not None else d_in
    t = {
        "encoder.weight": _w(rng, m, d_in, scale=1 / np.sqrt(d_in)),
        "encoder.bias": _w(rng, m, scale=0.1),
        "W_dec": _w(rng, m, do),
        "b_dec": _w(rng, do, scale=0.1),
    }
    save_file(t, str(folder / "sae.safetensors"))
    cfg = {"expansion_factor": expansion_factor, "normalize_decoder": True,
           "num_latents": num_latents, "k": k, "multi_topk": False, "skip_connection": False,
           "transcode": transcode, "activation": "topk", "d_in": d_in}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return t


def write_activations(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=metadata or None)
