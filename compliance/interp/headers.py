"""Torch-free reading of safetensors headers and detection of artifact formats.

The registry uses this to record an artifact's format and shape without importing torch.
A safetensors file is an 8-byte little-endian header length, a JSON header
``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}`` and the raw data.

Formats recognised by :func:`detect_format` (``ArtifactInfo.format``):

``saelens``                    folder with ``cfg.json`` + ``sae_weights.safetensors``
                               (``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec [d_sae, d_out]``,
                               ``b_dec``, optional ``threshold``, optional ``W_skip [d_out, d_in]``)
``circuit_tracer_transcoder``  one ``.safetensors`` file with ``W_enc [d_tc, d_model]``, ``b_enc``,
                               ``W_dec [d_tc, d_out]``, ``b_dec``, optional
                               ``activation_function.threshold`` (or ``threshold``), ``W_skip``
``circuit_tracer_clt``         folder with ``W_enc_{i}.safetensors`` / ``W_dec_{i}.safetensors``
``sparsify``                   folder with ``cfg.json`` + ``sae.safetensors``
                               (``encoder.weight [m, d]``, ``encoder.bias``, ``W_dec [m, d_out]``,
                               ``b_dec``, ``W_skip`` when ``skip_connection``)
``gemma_scope``                ``params.npz`` (file, or a folder holding it), JumpReLU
``dictionary_learning``        folder with ``config.json`` + ``ae.pt`` (a state dict, whose names
                               and shapes are read without torch and without unpickling)
``probe``                      ``probe.safetensors`` (file, or a folder holding it):
                               ``weight [n_classes or 1, d]``, optional ``bias``
``attribution_baseline``       ``baseline.safetensors`` (file or folder): ``baseline [d_in]``
                               (a reference input for integrated-gradients-style attribution;
                               optionally ``baseline [n, d_in]`` for a set of references)
``feature_labels``             a ``.json`` file ``{"<feature index>": "label", ...}``

Artifact sets (:func:`detect_set`): a circuit-tracer transcoder set (``config.yaml`` with
``model_kind: transcoder_set`` and ``layer_{i}.safetensors``), a sparsify multi-hookpoint
folder and a folder of SAELens SAEs (one subfolder per hook point).

No tensor is ignored: every key of a weights file must belong to the format, or detection
fails naming it; config settings that change the maths are read or refused by name
(:mod:`compliance.interp.formats` lists them).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from compliance.errors import InputError
from compliance.interp.formats import FORMATS, refuse
from compliance.interp.serial import ToDict

MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]


@dataclass
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Parse and validate a safetensors header (offsets, dtypes, sizes) without loading data."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    size = path.stat().st_size
    if size < 8:
        raise InputError(f"corrupted safetensors header: {path.name}: file is {size} bytes")
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n == 0 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise InputError(f"corrupted safetensors header: {path.name}: header length {n} invalid")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"corrupted safetensors header: {path.name}: {exc}") from None
    if not isinstance(header, dict):
        raise InputError(f"corrupted safetensors header: {path.name}: not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise InputError(f"corrupted safetensors header: {path.name}: __metadata__ not an object")
    data_len = size - 8 - n
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(_header_int(s) for s in entry["shape"])
            start, end = (_header_int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError, OverflowError):
            raise InputError(
                f"corrupted safetensors header: {path.name}: bad entry for tensor {name!r}"
            ) from None
        if dtype not in DTYPE_BYTES:
            raise InputError(f"corrupted safetensors header: {path.name}: {name}: dtype {dtype!r}")
        numel = 1
        for s in shape:
            if s < 0:
                raise InputError(f"corrupted safetensors header: {path.name}: {name}: shape {shape}")
            numel *= s
        if not (0 <= start <= end <= data_len) or end - start != numel * DTYPE_BYTES[dtype]:
            raise InputError(
                f"corrupted safetensors header: {path.name}: {name}: data offsets "
                f"[{start}, {end}) do not fit dtype {dtype} shape {list(shape)} in {data_len} bytes"
            )
        tensors[name] = TensorInfo(dtype, shape)
    return SafetensorsHeader(path, tensors, {str(k): str(v) for k, v in metadata.items()})


@dataclass
class ArtifactInfo(ToDict):
    format: str
    kind_hint: str  # sae | transcoder | clt | probe | attribution_baseline | feature_labels
    architecture: str | None = None  # standard | jumprelu | topk | linear ...
    d_in: int | None = None
    d_sae: int | None = None  # features per layer (classes for a probe)
    d_out: int | None = None
    n_layers: int | None = None
    files: list[Path] = field(default_factory=list)
    hook_name: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> dict:
        return {"d_in": self.d_in, "d_sae": self.d_sae, "d_out": self.d_out, "layers": self.n_layers}


def _require(header: SafetensorsHeader, name: str, ndim: int) -> tuple[int, ...]:
    if name not in header.tensors:
        raise InputError(f"{header.path.name}: missing tensor {name!r}")
    info = header.tensors[name]
    if len(info.shape) != ndim:
        raise InputError(
            f"{header.path.name}: tensor {name!r} has shape {list(info.shape)}, expected {ndim} dims"
        )
    if info.dtype not in FLOAT_DTYPES:
        raise InputError(f"{header.path.name}: tensor {name!r} has non-float dtype {info.dtype}")
    return info.shape


def _expect(header: SafetensorsHeader, name: str, shape: tuple[int, ...], optional=False) -> bool:
    if name not in header.tensors:
        if optional:
            return False
        raise InputError(f"{header.path.name}: missing tensor {name!r}")
    got = _require(header, name, len(shape))
    if got != shape:
        raise InputError(
            f"{header.path.name}: tensor {name!r} has shape {list(got)}, expected {list(shape)}"
        )
    return True


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path.name}: expected a JSON object")
    return data


def _cfg_int(cfg: dict, key: str, path: Path, got: int) -> None:
    if key in cfg and cfg[key] is not None and int(cfg[key]) != got:
        raise InputError(f"{path.name}: {key}={cfg[key]} but the weights say {got}")


# ---------------------------------------------------------------- strictness
def _only(header: SafetensorsHeader, allowed: set[str], what: str) -> None:
    """No tensor is ignored: a key the format does not define is an error naming it."""
    unknown = sorted(set(header.tensors) - allowed)
    if unknown:
        raise InputError(
            f"{header.path.name}: unknown tensor {unknown[0]!r} in a {what} file "
            f"(it stores only {', '.join(sorted(allowed))}); refusing rather than ignoring it"
        )


def _one_of(header: SafetensorsHeader, names: tuple[str, ...]) -> str | None:
    present = [n for n in names if n in header.tensors]
    if len(present) > 1:
        raise InputError(f"{header.path.name}: both {present[0]!r} and {present[1]!r} present")
    return present[0] if present else None


def _cfg_choice(cfg: dict, key: str, default, path: Path):
    value = cfg.get(key, default)
    return default if value is None else value


# ---------------------------------------------------------------- SAELens
SAELENS_ARCHS = {
    # architecture: (activation, transcoder, skip, tensors beyond W_enc/W_dec/b_dec)
    "standard": ("relu", False, False, {"b_enc"}),
    "jumprelu": ("jumprelu_relu", False, False, {"b_enc", "threshold"}),
    "topk": ("topk", False, False, {"b_enc"}),
    "abstopk": ("abstopk", False, False, {"b_enc"}),
    "gated": ("gated", False, False, {"b_gate", "r_mag", "b_mag"}),
    "transcoder": ("relu", True, False, {"b_enc"}),
    "skip_transcoder": ("relu", True, True, {"b_enc", "W_skip"}),
    "jumprelu_transcoder": ("jumprelu_relu", True, False, {"b_enc", "threshold"}),
    "jumprelu_skip_transcoder": ("jumprelu_relu", True, True, {"b_enc", "threshold", "W_skip"}),
}
SAELENS_NORMS = ("none", "constant_norm_rescale", "layer_norm")


def _saelens_architecture(cfg: dict, h: SafetensorsHeader, cfg_path: Path) -> str:
    arch = str(cfg.get("architecture") or "").lower()
    if not arch:  # SAELens < 6 configs: no architecture field
        act = str(cfg.get("activation_fn_str") or cfg.get("activation_fn") or "relu").lower()
        if act == "topk":
            arch = "topk"
        elif act not in ("relu", ""):
            raise InputError(f"{cfg_path.name}: SAELens activation_fn {act!r} is not supported")
        else:
            arch = "jumprelu" if "threshold" in h.tensors else "standard"
        if "d_out" in cfg or "W_skip" in h.tensors:
            base = "" if arch == "standard" else arch + "_"
            arch = base + ("skip_transcoder" if "W_skip" in h.tensors else "transcoder")
    if arch in ("batchtopk", "matryoshka_batchtopk"):
        raise refuse(cfg_path.name, "saelens", "batchtopk / matryoshka_batchtopk (training save)",
                     f"architecture {arch!r} (training save)")
    if arch not in SAELENS_ARCHS:
        raise refuse(cfg_path.name, "saelens", "other architectures (temporal, matching_pursuit, ...)",
                     f"architecture {arch!r}")
    return arch


def _saelens_k(cfg: dict) -> int | None:
    k = cfg.get("k")
    if k is None:
        k = (cfg.get("activation_fn_kwargs") or {}).get("k")
    return None if k is None else int(k)


def _detect_saelens(folder: Path) -> ArtifactInfo:
    cfg_path, w_path = folder / "cfg.json", folder / "sae_weights.safetensors"
    cfg = _read_json(cfg_path)
    h = read_safetensors_header(w_path)
    arch = _saelens_architecture(cfg, h, cfg_path)
    act, is_tc, has_skip, more = SAELENS_ARCHS[arch]
    _only(h, {"W_enc", "W_dec", "b_dec"} | more, f"SAELens {arch}")
    d_in, d_sae = _require(h, "W_enc", 2)
    d_sae2, d_out = _require(h, "W_dec", 2)
    if d_sae2 != d_sae:
        raise InputError(
            f"{w_path.name}: W_dec has {d_sae2} rows but W_enc has {d_sae} columns (features)"
        )
    _expect(h, "b_dec", (d_out,))
    for name in sorted(more - {"W_skip"}):
        _expect(h, name, (d_sae,))
    if has_skip:
        _expect(h, "W_skip", (d_out, d_in))
    _cfg_int(cfg, "d_in", cfg_path, d_in)
    _cfg_int(cfg, "d_sae", cfg_path, d_sae)
    _cfg_int(cfg, "d_out", cfg_path, d_out)
    if not is_tc and d_out != d_in:
        raise InputError(f"{cfg_path.name}: SAELens {arch} with d_in {d_in} != d_out {d_out}")
    k = _saelens_k(cfg) if act in ("topk", "abstopk") else None
    if act in ("topk", "abstopk") and (k is None or not 0 < k <= d_sae):
        raise InputError(f"{cfg_path.name}: TopK SAE needs 1 <= k <= d_sae, got k={k}")
    rescale = bool(cfg.get("rescale_acts_by_decoder_norm", False))
    if rescale and act not in ("topk", "abstopk"):
        raise InputError(f"{cfg_path.name}: rescale_acts_by_decoder_norm on a {arch} SAE")
    norm = str(_cfg_choice(cfg, "normalize_activations", "none", cfg_path))
    if norm not in SAELENS_NORMS:
        option = f"normalize_activations: {norm}"
        if any(e.option == option for e in FORMATS):
            raise refuse(cfg_path.name, "saelens", option, f"normalize_activations={norm!r}")
        raise InputError(f"{cfg_path.name}: SAELens normalize_activations={norm!r} is unknown: refused")
    reshape = str(_cfg_choice(cfg, "reshape_activations", "none", cfg_path))
    if reshape not in ("none", "hook_z"):
        raise InputError(f"{cfg_path.name}: SAELens reshape_activations={reshape!r} is unknown: refused")
    apply_b_dec = cfg.get("apply_b_dec_to_input")
    if apply_b_dec is None:
        apply_b_dec = not is_tc
    if apply_b_dec and is_tc:
        raise InputError(f"{cfg_path.name}: apply_b_dec_to_input is not supported for transcoders")
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook = cfg.get("hook_name") or meta.get("hook_name") or cfg.get("hook_point")
    hook_out = cfg.get("hook_name_out") or meta.get("hook_name_out")
    extra = {
        "apply_b_dec_to_input": bool(apply_b_dec), "activation": act, "k": k,
        "rescale_acts_by_decoder_norm": rescale, "skip": has_skip, "hook_name_out": hook_out,
        "normalize_activations": norm, "reshape_activations": reshape,
        "saelens_architecture": arch, "dtype": h.tensors["W_enc"].dtype,
    }
    arch_name = {"relu": "standard", "jumprelu_relu": "jumprelu"}.get(act, act)
    return ArtifactInfo(
        "saelens", "transcoder" if is_tc else "sae", arch_name, d_in, d_sae, d_out, None,
        [cfg_path, w_path], hook, extra,
    )


# ---------------------------------------------------------------- circuit-tracer
CT_THRESHOLDS = ("activation_function.threshold", "threshold")


def _detect_ct_transcoder(path: Path) -> ArtifactInfo:
    h = read_safetensors_header(path)
    if "log_thresholds" in h.tensors:
        raise refuse(path.name, "circuit_tracer_transcoder", "log_thresholds",
                     "tensor 'log_thresholds'")
    _only(h, {"W_enc", "W_dec", "b_enc", "b_dec", "W_skip", *CT_THRESHOLDS},
          "circuit-tracer transcoder")
    d_tc, d_in = _require(h, "W_enc", 2)
    d_tc2, d_out = _require(h, "W_dec", 2)
    if d_tc2 != d_tc:
        raise InputError(f"{path.name}: W_dec has {d_tc2} rows but W_enc has {d_tc} (features)")
    _expect(h, "b_enc", (d_tc,))
    _expect(h, "b_dec", (d_out,))
    thr = _one_of(h, CT_THRESHOLDS)
    if thr is not None and h.tensors[thr].shape not in ((d_tc,), ()):
        raise InputError(f"{path.name}: tensor {thr!r} has shape {list(h.tensors[thr].shape)}, "
                         f"expected [{d_tc}] or a scalar")
    if thr is not None:
        _require(h, thr, len(h.tensors[thr].shape))
    has_skip = _expect(h, "W_skip", (d_out, d_in), optional=True)
    md = h.metadata  # circuit-tracer config names: feature_input_hook / feature_output_hook
    layer = md.get("layer")
    if layer is None and (m := re.fullmatch(r"layer_(\d+)\.safetensors", path.name)):
        layer = m.group(1)
    return ArtifactInfo(
        "circuit_tracer_transcoder", "transcoder", "jumprelu" if thr else "standard",
        d_in, d_tc, d_out, None, [path], md.get("hook_name") or md.get("feature_input_hook"),
        {"skip": has_skip, "dtype": h.tensors["W_enc"].dtype, "threshold_key": thr,
         "hook_name_out": md.get("hook_name_out") or md.get("feature_output_hook"),
         "layer": int(layer) if str(layer or "").isdigit() else None},
    )


def _clt_name(h: SafetensorsHeader, base: str, i: int) -> str | None:
    return _one_of(h, (f"{base}_{i}", base))


def _detect_clt(folder: Path) -> ArtifactInfo:
    enc_files = {int(m.group(1)): p for p in folder.iterdir()
                 if (m := re.fullmatch(r"W_enc_(\d+)\.safetensors", p.name))}
    n_layers = len(enc_files)
    if sorted(enc_files) != list(range(n_layers)):
        raise InputError(f"{folder.name}: W_enc files are not numbered 0..{n_layers - 1}")
    files: list[Path] = []
    d_tc = d_model = None
    has_thr = []
    for i in range(n_layers):
        ep, dp = enc_files[i], folder / f"W_dec_{i}.safetensors"
        if not dp.is_file():
            raise InputError(f"{folder.name}: missing W_dec_{i}.safetensors")
        he, hd = read_safetensors_header(ep), read_safetensors_header(dp)
        if f"W_skip_{i}" in he.tensors or "W_skip" in he.tensors:
            raise refuse(ep.name, "circuit_tracer_clt", "CLT W_skip", "tensor 'W_skip'")
        _only(he, {f"{b}{s}" for b in ("W_enc", "b_enc", "b_dec", "threshold")
                   for s in (f"_{i}", "")}, f"circuit-tracer CLT encoder (layer {i})")
        _only(hd, {f"W_dec_{i}", "W_dec"}, f"circuit-tracer CLT decoder (layer {i})")
        wn = _clt_name(he, "W_enc", i)
        if wn is None:
            raise InputError(f"{ep.name}: missing tensor 'W_enc_{i}'")
        t, d = _require(he, wn, 2)
        if d_tc is None:
            d_tc, d_model, dtype = t, d, he.tensors[wn].dtype
        elif (t, d) != (d_tc, d_model):
            raise InputError(
                f"{ep.name}: tensor {wn!r} has shape {[t, d]}, layer 0 has {[d_tc, d_model]}"
            )
        for base, shape in (("b_enc", (d_tc,)), ("b_dec", (d_model,))):
            name = _clt_name(he, base, i)
            if name is None:
                raise InputError(f"{ep.name}: missing tensor '{base}_{i}'")
            _expect(he, name, shape)
        tn = _clt_name(he, "threshold", i)
        has_thr.append(tn is not None and _expect(he, tn, (d_tc,)))
        dn = _clt_name(hd, "W_dec", i)
        if dn is None:
            raise InputError(f"{dp.name}: missing tensor 'W_dec_{i}'")
        _expect(hd, dn, (d_tc, n_layers - i, d_model))
        files += [ep, dp]
    if n_layers == 0:
        raise InputError(f"{folder.name}: no W_enc_*.safetensors files")
    if len(set(has_thr)) > 1:
        raise InputError(f"{folder.name}: some layers have a threshold and some do not")
    hooks = {}
    if (folder / "config.yaml").is_file():
        cfg = _read_yaml(folder / "config.yaml")
        if cfg.get("model_kind") not in (None, "cross_layer_transcoder"):
            raise InputError(f"config.yaml: model_kind {cfg.get('model_kind')!r} but the folder "
                             "holds cross-layer transcoder files")
        files.insert(0, folder / "config.yaml")
        hooks = {"feature_input_hook": cfg.get("feature_input_hook"),
                 "feature_output_hook": cfg.get("feature_output_hook")}
    hook_in = hooks.get("feature_input_hook")
    hook_out = hooks.get("feature_output_hook")
    return ArtifactInfo(
        "circuit_tracer_clt", "clt", "jumprelu" if has_thr[0] else "standard",
        d_model, d_tc, d_model, n_layers, files,
        f"blocks.{{layer}}.{hook_in}" if hook_in else None,
        {"dtype": dtype, "hook_name_out": f"blocks.{{layer}}.{hook_out}" if hook_out else None},
    )


def _read_yaml(path: Path) -> dict:
    from compliance.safeyaml import load_yaml_file  # size, depth and alias limits

    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise InputError(f"{path.name}: expected a YAML mapping")
    return data


# ---------------------------------------------------------------- sparsify
SPARSIFY_CFG = {"activation", "expansion_factor", "normalize_decoder", "num_latents", "k",
                "multi_topk", "skip_connection", "transcode", "d_in"}


def _detect_sparsify(folder: Path) -> ArtifactInfo:
    cfg_path, w_path = folder / "cfg.json", folder / "sae.safetensors"
    cfg = _read_json(cfg_path)
    unknown = sorted(set(cfg) - SPARSIFY_CFG - {"hookpoint", "hook_name"})
    if unknown:
        raise InputError(f"{cfg_path.name}: unknown sparsify setting {unknown[0]!r}: refusing "
                         "rather than ignoring it")
    h = read_safetensors_header(w_path)
    skip = bool(cfg.get("skip_connection", False))
    _only(h, {"encoder.weight", "encoder.bias", "W_dec", "b_dec"} | ({"W_skip"} if skip else set()),
          "sparsify" + (" (skip_connection)" if skip else " (skip_connection false)"))
    m, d_in = _require(h, "encoder.weight", 2)
    m2, d_out = _require(h, "W_dec", 2)
    if m2 != m:
        raise InputError(f"{w_path.name}: W_dec has {m2} rows but encoder.weight has {m}")
    _expect(h, "encoder.bias", (m,))
    _expect(h, "b_dec", (d_out,))
    if skip:
        _expect(h, "W_skip", (d_out, d_in))
    _cfg_int(cfg, "d_in", cfg_path, d_in)
    num_latents = int(cfg.get("num_latents") or 0)
    expected_m = num_latents or (d_in * int(cfg.get("expansion_factor", 32) or 0))
    if expected_m and expected_m != m:
        raise InputError(
            f"{cfg_path.name}: num_latents/expansion_factor give {expected_m} latents, "
            f"encoder.weight has {m}"
        )
    k = cfg.get("k", 32)
    if k is None or not 0 < int(k) <= m:
        raise InputError(f"{cfg_path.name}: sparsify needs 1 <= k <= {m}, got k={k}")
    transcode = bool(cfg.get("transcode", False))
    if not transcode and d_out != d_in:
        raise InputError(f"{cfg_path.name}: d_out {d_out} != d_in {d_in} but transcode is false")
    act = str(cfg.get("activation", "topk")).lower()
    if act not in ("topk", "groupmax"):
        raise InputError(f"{cfg_path.name}: sparsify activation {act!r} is unknown: refused")
    if act == "groupmax" and m % int(k):
        raise InputError(f"{cfg_path.name}: groupmax needs k ({k}) to divide the latents ({m})")
    return ArtifactInfo(
        "sparsify", "transcoder" if transcode else "sae", act, d_in, m, d_out, None,
        [cfg_path, w_path], cfg.get("hookpoint") or cfg.get("hook_name") or None,
        {"k": int(k), "transcode": transcode, "skip": skip, "activation": act,
         "multi_topk": bool(cfg.get("multi_topk", False)),
         "dtype": h.tensors["encoder.weight"].dtype},
    )


# ---------------------------------------------------------------- Gemma Scope params.npz
def read_npz_header(path: Path) -> SafetensorsHeader:
    """Names, dtypes and shapes of the arrays of an .npz, from the .npy headers only."""
    import zipfile

    import numpy.lib.format as npformat

    tensors: dict[str, TensorInfo] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    raise InputError(f"{path.name}: member {name!r} is not a .npy array")
                with zf.open(name) as fh:
                    version = npformat.read_magic(fh)
                    read = (npformat.read_array_header_1_0 if version == (1, 0)
                            else npformat.read_array_header_2_0)  # 2.0 and 3.0 headers
                    shape, _fortran, dtype = read(fh)
                if dtype.hasobject:
                    raise InputError(f"{path.name}: array {name[:-4]!r} holds Python objects "
                                     "(would need unpickling): refused")
                kind = {"f": "F", "i": "I", "u": "U", "b": "BOOL"}.get(dtype.kind, dtype.kind)
                code = kind if kind == "BOOL" else f"{kind}{dtype.itemsize * 8}"
                tensors[name[:-4]] = TensorInfo(code, tuple(int(s) for s in shape))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"cannot read {path.name}: {exc}") from None
    return SafetensorsHeader(path, tensors, {})


GEMMA_SCOPE_KEYS = {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"}


def _detect_gemma_scope(path: Path) -> ArtifactInfo:
    h = read_npz_header(path)
    _only(h, GEMMA_SCOPE_KEYS, "Gemma Scope params.npz")
    d_in, d_sae = _require(h, "W_enc", 2)
    d_sae2, d_out = _require(h, "W_dec", 2)
    if d_sae2 != d_sae:
        raise InputError(f"{path.name}: W_dec has {d_sae2} rows but W_enc has {d_sae} columns")
    _expect(h, "b_enc", (d_sae,))
    _expect(h, "b_dec", (d_out,))
    _expect(h, "threshold", (d_sae,))
    return ArtifactInfo("gemma_scope", "sae" if d_out == d_in else "transcoder", "jumprelu",
                        d_in, d_sae, d_out, None, [path], None,
                        {"kinds": ["sae", "transcoder"] if d_out == d_in else ["transcoder"],
                         "dtype": h.tensors["W_enc"].dtype})


# ---------------------------------------------------------------- dictionary_learning
DL_CLASSES = {
    # dict_class: tensors of its state dict
    "AutoEncoder": {"bias", "encoder.weight", "encoder.bias", "decoder.weight"},
    "AutoEncoderNew": {"encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"},
    "GatedAutoEncoder": {"decoder_bias", "encoder.weight", "r_mag", "gate_bias", "mag_bias",
                         "decoder.weight"},
    "JumpReluAutoEncoder": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"},
}


def _dl_shapes(cls: str, d: int, m: int) -> dict[str, tuple[int, ...]]:
    if cls == "JumpReluAutoEncoder":
        return {"W_enc": (d, m), "b_enc": (m,), "W_dec": (m, d), "b_dec": (d,), "threshold": (m,)}
    shapes = {"encoder.weight": (m, d), "decoder.weight": (d, m)}
    shapes.update({"AutoEncoder": {"bias": (d,), "encoder.bias": (m,)},
                   "AutoEncoderNew": {"encoder.bias": (m,), "decoder.bias": (d,)},
                   "GatedAutoEncoder": {"decoder_bias": (d,), "r_mag": (m,), "gate_bias": (m,),
                                        "mag_bias": (m,)}}[cls])
    return shapes


def _detect_dictionary_learning(folder: Path) -> ArtifactInfo:
    cfg_path, w_path = folder / "config.json", folder / "ae.pt"
    cfg = _read_json(cfg_path)
    trainer = cfg.get("trainer") if isinstance(cfg.get("trainer"), dict) else {}
    cls = trainer.get("dict_class")
    if cls not in DL_CLASSES:
        raise refuse(cfg_path.name, "dictionary_learning", "other dictionary classes",
                     f"dict_class {cls!r}")
    d = trainer.get("activation_dim")
    m = trainer.get("dict_size")
    if not (isinstance(d, int) and isinstance(m, int) and d > 0 and m > 0):
        raise InputError(f"{cfg_path.name}: trainer.activation_dim / dict_size missing")
    if not w_path.is_file():
        raise InputError(f"{folder.name}: missing ae.pt")
    from compliance.interp.torch_zip import read_state_dict_header  # no torch, no unpickling

    sd = read_state_dict_header(w_path)
    h = SafetensorsHeader(w_path, {k: TensorInfo(dt, shape) for k, (dt, shape) in sd.items()}, {})
    _only(h, DL_CLASSES[cls], f"dictionary_learning {cls}")
    for name, shape in _dl_shapes(cls, d, m).items():
        _expect(h, name, shape)
    return ArtifactInfo("dictionary_learning", "sae",
                        {"GatedAutoEncoder": "gated", "JumpReluAutoEncoder": "jumprelu"}.get(
                            cls, "standard"),
                        d, m, d, None, [cfg_path, w_path],
                        (cfg.get("buffer") or {}).get("submodule_name") if isinstance(
                            cfg.get("buffer"), dict) else None,
                        {"dict_class": cls, "keys": sorted(DL_CLASSES[cls])})


# ---------------------------------------------------------------- artifact sets
@dataclass
class SetInfo(ToDict):
    """A folder of several artifacts judged as one unit (DESIGN §3): one member each."""

    format: str  # circuit_tracer_set | sparsify_set | saelens_set
    kind_hint: str
    members: list[tuple[str, Path, ArtifactInfo]]  # (member name, path, info), in order
    files: list[Path]  # every file of the set (config and member files)
    extra: dict = field(default_factory=dict)


def _subfolders(folder: Path, *names: str) -> list[Path]:
    return sorted((p for p in folder.iterdir()
                   if p.is_dir() and all((p / n).is_file() for n in names)), key=_natural)


def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def detect_set(path: str | Path) -> SetInfo | None:
    """The artifact set a folder holds, or None when it is not a set (torch-free)."""
    folder = Path(path)
    if not folder.is_dir() or (folder / "cfg.json").is_file():
        return None
    cfg = _read_yaml(folder / "config.yaml") if (folder / "config.yaml").is_file() else None
    layer_files = sorted(folder.glob("layer_*.safetensors"), key=_natural)
    if cfg is not None and cfg.get("model_kind") not in ("transcoder_set", "cross_layer_transcoder"):
        raise InputError(f"{folder.name}/config.yaml: circuit-tracer model_kind "
                         f"{cfg.get('model_kind')!r} is unknown: refused")
    if (cfg is not None and cfg.get("model_kind") == "transcoder_set") or (
            cfg is None and layer_files and not (folder / "W_enc_0.safetensors").exists()):
        return _ct_set(folder, cfg or {}, layer_files)
    if cfg is not None:
        return None  # a CLT: detect_format reads it
    for fmt, names, detect in (("sparsify_set", ("cfg.json", "sae.safetensors"), _detect_sparsify),
                               ("saelens_set", ("cfg.json", "sae_weights.safetensors"),
                                _detect_saelens)):
        subs = _subfolders(folder, *names)
        if subs:
            members = [(s.name, s, detect(s)) for s in subs]
            for name, _, info in members:  # sparsify names the hookpoint by its subfolder
                info.hook_name = info.hook_name or name
            kinds = {i.kind_hint for _, _, i in members}
            if len(kinds) > 1:
                raise InputError(f"{folder.name}: members mix kinds {sorted(kinds)}")
            files = [f for _, _, i in members for f in i.files]
            return SetInfo(fmt, kinds.pop(), members, files, {})
    return None


def _ct_set(folder: Path, cfg: dict, layer_files: list[Path]) -> SetInfo:
    idx = [int(m.group(1)) for p in layer_files
           if (m := re.fullmatch(r"layer_(\d+)\.safetensors", p.name))]
    if not idx:
        raise InputError(f"{folder.name}: transcoder set without layer_{{i}}.safetensors files")
    if idx != list(range(len(idx))):
        raise InputError(f"{folder.name}: layer files are not numbered 0..{len(idx) - 1} "
                         f"(found {idx})")
    hin, hout = cfg.get("feature_input_hook"), cfg.get("feature_output_hook")
    members = []
    for i, p in zip(idx, layer_files):
        info = _detect_ct_transcoder(p)
        info.extra["layer"] = i
        if hin:
            info.hook_name = f"blocks.{i}.{hin}"
        if hout:
            info.extra["hook_name_out"] = f"blocks.{i}.{hout}"
        members.append((f"layer_{i}", p, info))
    d = {(i.d_in, i.d_sae, i.d_out) for _, _, i in members}
    if len(d) > 1:
        raise InputError(f"{folder.name}: layers differ in shape {sorted(d)}")
    files = ([folder / "config.yaml"] if (folder / "config.yaml").is_file() else []) + layer_files
    extra = {k: cfg.get(k) for k in ("feature_input_hook", "feature_output_hook", "scan",
                                     "model_name") if cfg.get(k) is not None}
    return SetInfo("circuit_tracer_set", "transcoder", members, files, extra)


# ---------------------------------------------------------------- probes, baselines, labels
def _detect_probe(path: Path) -> ArtifactInfo:
    h = read_safetensors_header(path)
    _only(h, {"weight", "bias"}, "probe")
    n_classes, d = _require(h, "weight", 2)
    _expect(h, "bias", (n_classes,), optional=True)
    return ArtifactInfo("probe", "probe", "linear", d, n_classes, n_classes, None, [path],
                        h.metadata.get("hook_name"), {})


def _detect_baseline(path: Path) -> ArtifactInfo:
    h = read_safetensors_header(path)
    if "baseline" not in h.tensors:
        raise InputError(f"{path.name}: missing tensor 'baseline'")
    _only(h, {"baseline"}, "attribution baseline")
    shape = h.tensors["baseline"].shape
    if len(shape) not in (1, 2):
        raise InputError(f"{path.name}: 'baseline' must be [d_in] or [n, d_in], got {list(shape)}")
    _require(h, "baseline", len(shape))
    return ArtifactInfo("attribution_baseline", "attribution_baseline", None, shape[-1], None,
                        None, None, [path], h.metadata.get("hook_name"),
                        {"n_baselines": 1 if len(shape) == 1 else shape[0]})


def read_feature_labels(path: str | Path) -> dict[int, str]:
    """Read a feature-label JSON file ``{"<index>": "label"}``."""
    path = Path(path)
    data = _read_json(path)
    labels: dict[int, str] = {}
    for k, v in data.items():
        if not (isinstance(k, str) and k.isdigit()) or not isinstance(v, str):
            raise InputError(f"{path.name}: entry {k!r} is not '<feature index>': '<label>'")
        labels[int(k)] = v
    return labels


def detect_format(path: str | Path) -> ArtifactInfo:
    """Recognise an artifact's format and read its shapes from headers (no torch, no data)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"artifact not found: {path}")
    if path.is_dir():
        if (path / "cfg.json").is_file() and (path / "sae_weights.safetensors").is_file():
            return _detect_saelens(path)
        if (path / "cfg.json").is_file() and (path / "sae.safetensors").is_file():
            return _detect_sparsify(path)
        if (path / "W_enc_0.safetensors").is_file():
            return _detect_clt(path)
        if (path / "config.json").is_file() and (path / "ae.pt").is_file():
            return _detect_dictionary_learning(path)
        if (path / "params.npz").is_file():
            return _detect_gemma_scope(path / "params.npz")
        s = detect_set(path)
        if s is not None:
            raise InputError(f"{path}: an artifact set ({s.format}, {len(s.members)} members): "
                             "register the folder with `compliance artifact add` (one member each) "
                             "or give one member's path")
        for name, detect in (("probe.safetensors", _detect_probe),
                             ("baseline.safetensors", _detect_baseline)):
            if (path / name).is_file():
                info = detect(path / name)
                if (path / "cfg.json").is_file():  # optional config beside it (hook name...)
                    cfg = _read_json(path / "cfg.json")
                    info.files.insert(0, path / "cfg.json")
                    info.hook_name = info.hook_name or cfg.get("hook_name")
                    info.extra["cfg"] = cfg
                return info
        raise InputError(f"{path}: not a recognised artifact folder (SAELens, sparsify, CLT...)")
    if path.suffix == ".json":
        labels = read_feature_labels(path)
        return ArtifactInfo("feature_labels", "feature_labels", None, None,
                            (max(labels) + 1) if labels else 0, None, None, [path], None,
                            {"n_labels": len(labels)})
    if path.suffix == ".npz":
        return _detect_gemma_scope(path)
    if path.suffix != ".safetensors":
        raise InputError(f"{path.name}: unknown artifact file type")
    h = read_safetensors_header(path)
    if "W_enc" in h.tensors and "W_dec" in h.tensors:
        return _detect_ct_transcoder(path)
    if "baseline" in h.tensors:
        return _detect_baseline(path)
    if "weight" in h.tensors:
        return _detect_probe(path)
    if "encoder.weight" in h.tensors:
        raise InputError(f"{path.name}: a sparsify weights file: give its folder (with cfg.json)")
    raise InputError(f"{path.name}: tensors {sorted(h.tensors)} match no known artifact format")


def file_hashes(path: str | Path, chunk: int = 1 << 20) -> dict[str, str]:
    """SHA-256 of every file of an artifact, keyed by file name (what ``load_artifact`` checks)."""
    import hashlib

    out: dict[str, str] = {}
    for f in detect_format(path).files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        out[f.name] = h.hexdigest()
    return out


def _header_int(value) -> int:
    """A shape or offset: a JSON integer (not 2.0, not 1e400, not true)."""
    if type(value) is not int:
        raise ValueError(f"not an integer: {value!r}")
    return value


# ------------------------------------------------------------------ activation provenance
# Header metadata keys written by the project's capture path (``compliance check capture`` and
# ``downstream.save_activations`` callers): which weights produced the activations.
PROVENANCE_WEIGHTS = "compliance.weights_sha256"
PROVENANCE_MODEL = "compliance.model"
PROVENANCE_VERSION = "compliance.version"
PROVENANCE_HOOKS = "compliance.hooks"


def activation_provenance(path: str | Path) -> dict[str, str]:
    """The provenance an activations file carries in its safetensors metadata (may be empty:
    files written by other tools carry none)."""
    md = read_safetensors_header(Path(path)).metadata
    keys = {PROVENANCE_WEIGHTS: "weights_sha256", PROVENANCE_MODEL: "model", PROVENANCE_VERSION: "version",
            PROVENANCE_HOOKS: "hooks"}
    return {short: md[k] for k, short in keys.items() if k in md}
