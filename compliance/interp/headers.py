"""Torch-free reading of safetensors headers and detection of artifact formats.

The registry uses this to record an artifact's format and shape without importing torch.
A safetensors file is an 8-byte little-endian header length, a JSON header
``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}`` and the raw data.

Formats recognised by :func:`detect_format` (``ArtifactInfo.format``):

``saelens``                    folder with ``cfg.json`` + ``sae_weights.safetensors``
                               (``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec [d_sae, d_out]``,
                               ``b_dec``, optional ``threshold``, optional ``W_skip [d_out, d_in]``)
``circuit_tracer_transcoder``  one ``.safetensors`` file with ``W_enc [d_tc, d_model]``, ``b_enc``,
                               ``W_dec [d_tc, d_out]``, ``b_dec``, optional ``threshold``, ``W_skip``
``circuit_tracer_clt``         folder with ``W_enc_{i}.safetensors`` / ``W_dec_{i}.safetensors``
``sparsify``                   folder with ``cfg.json`` + ``sae.safetensors``
                               (``encoder.weight [m, d]``, ``encoder.bias``, ``W_dec [m, d_out]``,
                               ``b_dec``, optional ``W_skip``)
``probe``                      ``probe.safetensors`` (file, or a folder holding it):
                               ``weight [n_classes or 1, d]``, optional ``bias``
``attribution_baseline``       ``baseline.safetensors`` (file or folder): ``baseline [d_in]``
                               (a reference input for integrated-gradients-style attribution;
                               optionally ``baseline [n, d_in]`` for a set of references)
``feature_labels``             a ``.json`` file ``{"<feature index>": "label", ...}``
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from compliance.errors import InputError
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
            shape = tuple(int(s) for s in entry["shape"])
            start, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
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


# ---------------------------------------------------------------- SAELens
def _saelens_architecture(cfg: dict, has_threshold: bool) -> str:
    arch = str(cfg.get("architecture") or "").lower()
    act = str(cfg.get("activation_fn_str") or cfg.get("activation_fn") or "").lower()
    if "gated" in arch:
        raise InputError(f"SAELens architecture {arch!r} is not supported")
    if "jumprelu" in arch:
        return "jumprelu"
    if "topk" in arch or act == "topk":
        return "topk"
    if arch in ("", "standard", "relu", "transcoder", "skip_transcoder"):
        return "jumprelu" if (not arch and has_threshold) else "standard"
    raise InputError(f"SAELens architecture {arch!r} is not supported")


def _saelens_k(cfg: dict) -> int | None:
    k = cfg.get("k")
    if k is None:
        k = (cfg.get("activation_fn_kwargs") or {}).get("k")
    return None if k is None else int(k)


def _detect_saelens(folder: Path) -> ArtifactInfo:
    cfg_path, w_path = folder / "cfg.json", folder / "sae_weights.safetensors"
    cfg = _read_json(cfg_path)
    h = read_safetensors_header(w_path)
    d_in, d_sae = _require(h, "W_enc", 2)
    d_sae2, d_out = _require(h, "W_dec", 2)
    if d_sae2 != d_sae:
        raise InputError(
            f"{w_path.name}: W_dec has {d_sae2} rows but W_enc has {d_sae} columns (features)"
        )
    _expect(h, "b_enc", (d_sae,))
    _expect(h, "b_dec", (d_out,))
    has_thr = _expect(h, "threshold", (d_sae,), optional=True)
    has_skip = _expect(h, "W_skip", (d_out, d_in), optional=True)
    _cfg_int(cfg, "d_in", cfg_path, d_in)
    _cfg_int(cfg, "d_sae", cfg_path, d_sae)
    _cfg_int(cfg, "d_out", cfg_path, d_out)
    arch = _saelens_architecture(cfg, has_thr)
    if arch == "jumprelu" and not has_thr:
        raise InputError(f"{w_path.name}: JumpReLU architecture but no 'threshold' tensor")
    raw_arch = str(cfg.get("architecture") or "")
    is_tc = "d_out" in cfg or has_skip or "transcoder" in raw_arch or d_out != d_in
    k = _saelens_k(cfg)
    if arch == "topk" and (k is None or not 0 < k <= d_sae):
        raise InputError(f"{cfg_path.name}: TopK SAE needs 1 <= k <= d_sae, got k={k}")
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook = cfg.get("hook_name") or meta.get("hook_name") or cfg.get("hook_point")
    hook_out = cfg.get("hook_name_out") or meta.get("hook_name_out")
    apply_b_dec = cfg.get("apply_b_dec_to_input")
    if apply_b_dec is None:
        apply_b_dec = not is_tc
    if apply_b_dec and d_out != d_in:
        raise InputError(f"{cfg_path.name}: apply_b_dec_to_input with d_in {d_in} != d_out {d_out}")
    extra = {
        "apply_b_dec_to_input": bool(apply_b_dec),
        "k": k,
        "skip": has_skip,
        "hook_name_out": hook_out,
        "normalize_activations": cfg.get("normalize_activations"),
        "dtype": h.tensors["W_enc"].dtype,
    }
    return ArtifactInfo(
        "saelens", "transcoder" if is_tc else "sae", arch, d_in, d_sae, d_out, None,
        [cfg_path, w_path], hook, extra,
    )


# ---------------------------------------------------------------- circuit-tracer
def _detect_ct_transcoder(path: Path) -> ArtifactInfo:
    h = read_safetensors_header(path)
    d_tc, d_in = _require(h, "W_enc", 2)
    d_tc2, d_out = _require(h, "W_dec", 2)
    if d_tc2 != d_tc:
        raise InputError(f"{path.name}: W_dec has {d_tc2} rows but W_enc has {d_tc} (features)")
    _expect(h, "b_enc", (d_tc,))
    _expect(h, "b_dec", (d_out,))
    has_thr = _expect(h, "threshold", (d_tc,), optional=True)
    has_skip = _expect(h, "W_skip", (d_out, d_in), optional=True)
    md = h.metadata  # circuit-tracer config names: feature_input_hook / feature_output_hook
    return ArtifactInfo(
        "circuit_tracer_transcoder", "transcoder", "jumprelu" if has_thr else "standard",
        d_in, d_tc, d_out, None, [path], md.get("hook_name") or md.get("feature_input_hook"),
        {"skip": has_skip, "dtype": h.tensors["W_enc"].dtype,
         "hook_name_out": md.get("hook_name_out") or md.get("feature_output_hook"),
         "layer": int(md["layer"]) if str(md.get("layer", "")).isdigit() else None},
    )


def _clt_name(h: SafetensorsHeader, base: str, i: int) -> str | None:
    for name in (f"{base}_{i}", base):
        if name in h.tensors:
            return name
    return None


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
    return ArtifactInfo(
        "circuit_tracer_clt", "clt", "jumprelu" if has_thr[0] else "standard",
        d_model, d_tc, d_model, n_layers, files, None,
        {"dtype": dtype},
    )


# ---------------------------------------------------------------- sparsify
def _detect_sparsify(folder: Path) -> ArtifactInfo:
    cfg_path, w_path = folder / "cfg.json", folder / "sae.safetensors"
    cfg = _read_json(cfg_path)
    h = read_safetensors_header(w_path)
    m, d_in = _require(h, "encoder.weight", 2)
    m2, d_out = _require(h, "W_dec", 2)
    if m2 != m:
        raise InputError(f"{w_path.name}: W_dec has {m2} rows but encoder.weight has {m}")
    _expect(h, "encoder.bias", (m,))
    _expect(h, "b_dec", (d_out,))
    has_skip = _expect(h, "W_skip", (d_out, d_in), optional=True)
    _cfg_int(cfg, "d_in", cfg_path, d_in)
    num_latents = int(cfg.get("num_latents") or 0)
    expected_m = num_latents or (d_in * int(cfg.get("expansion_factor") or 0))
    if expected_m and expected_m != m:
        raise InputError(
            f"{cfg_path.name}: num_latents/expansion_factor give {expected_m} latents, "
            f"encoder.weight has {m}"
        )
    k = cfg.get("k")
    if k is None or not 0 < int(k) <= m:
        raise InputError(f"{cfg_path.name}: sparsify needs 1 <= k <= {m}, got k={k}")
    transcode = bool(cfg.get("transcode", False))
    if not transcode and d_out != d_in:
        raise InputError(f"{cfg_path.name}: d_out {d_out} != d_in {d_in} but transcode is false")
    act = str(cfg.get("activation", "topk")).lower()
    if act not in ("topk",):
        raise InputError(f"{cfg_path.name}: sparsify activation {act!r} is not supported")
    return ArtifactInfo(
        "sparsify", "transcoder" if transcode else "sae", "topk", d_in, m, d_out, None,
        [cfg_path, w_path], cfg.get("hookpoint") or cfg.get("hook_name"),
        {"k": int(k), "transcode": transcode, "skip": has_skip,
         "multi_topk": bool(cfg.get("multi_topk", False)),
         "dtype": h.tensors["encoder.weight"].dtype},
    )


# ---------------------------------------------------------------- probes, baselines, labels
def _detect_probe(path: Path) -> ArtifactInfo:
    h = read_safetensors_header(path)
    n_classes, d = _require(h, "weight", 2)
    _expect(h, "bias", (n_classes,), optional=True)
    return ArtifactInfo("probe", "probe", "linear", d, n_classes, n_classes, None, [path],
                        h.metadata.get("hook_name"), {})


def _detect_baseline(path: Path) -> ArtifactInfo:
    h = read_safetensors_header(path)
    if "baseline" not in h.tensors:
        raise InputError(f"{path.name}: missing tensor 'baseline'")
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
    if path.suffix != ".safetensors":
        raise InputError(f"{path.name}: unknown artifact file type")
    h = read_safetensors_header(path)
    if "W_enc" in h.tensors and "W_dec" in h.tensors:
        return _detect_ct_transcoder(path)
    if "baseline" in h.tensors:
        return _detect_baseline(path)
    if "weight" in h.tensors:
        return _detect_probe(path)
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
