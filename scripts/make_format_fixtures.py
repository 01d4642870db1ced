"""Write the golden format fixtures with the producers' own code (issue 11).

Every artifact under tests/fixtures/formats/ is saved by its producer's own save function
(SAELens ``save_model`` / ``save_inference_model``, circuit-tracer ``TranscoderSet.to_safetensors``
and ``CrossLayerTranscoder.to_safetensors``, sparsify ``SparseCoder.save_to_disk``,
dictionary_learning's ``torch.save(ae.state_dict())`` as its trainer does), then loaded back with
the producer's own loader in float64; the reference metrics in ``reference.json`` come from the
producer's own ``encode`` / ``decode`` (or ``forward``), with the metric formulas of DESIGN §3
computed here in numpy float64. The test suite (tests/test_format_fixtures.py) compares the
project's loaders with these references at 1e-5 relative and never imports a producer.

This script is never imported by the project. Run it in a throwaway virtual environment:

    python3 -m venv /tmp/fixvenv
    /tmp/fixvenv/bin/pip install torch==2.13.0            # first: the local CPU wheel
    /tmp/fixvenv/bin/pip install sae-lens==6.54.12 circuit-tracer==0.5.0 eai-sparsify==1.3.3 einops
    /tmp/fixvenv/bin/pip install --no-deps dictionary-learning==0.1.0   # its deps (nnsight...) are not needed
    /tmp/fixvenv/bin/python scripts/make_format_fixtures.py tests/fixtures/formats

Refreshing: rerun the command; it rewrites the folder. The producer versions used are recorded
in every ``reference.json`` and in ``tests/fixtures/formats/VERSIONS.json``.

What is not the producer's own code (say so, rather than pretend): the ``config.yaml`` of the
circuit-tracer transcoder set is written here with ``yaml.dump`` in the layout of
circuit-tracer's ``save_transcoders_to_cache`` (which needs the Hugging Face hub); the Gemma
Scope ``params.npz`` is written with ``numpy.savez`` (Gemma Scope is a release, not a library)
and its reference comes from SAELens' ``JumpReLUSAE`` fed the way SAELens' Gemma Scope loader
reads the file; the dictionary_learning ``config.json`` holds only the trainer fields the
loader reads (no trainer is run); dictionary_learning's package ``__init__`` imports nnsight,
so its ``dictionary.py`` module is loaded by file path.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.numpy import save_file

N, D, M = 64, 8, 64  # rows, d_model, features: a few KB to a few tens of KB per fixture
F64 = torch.float64


def versions() -> dict:
    out = {"torch": torch.__version__}
    for pkg in ("sae-lens", "circuit-tracer", "eai-sparsify", "dictionary-learning", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


# ------------------------------------------------------------------ metrics (DESIGN §3, float64)
def metrics(y: np.ndarray, yh: np.ndarray, f: np.ndarray) -> dict:
    y, yh, f = (np.asarray(a, dtype=np.float64) for a in (y, yh, f))
    n = y.shape[0]
    mse = float(((y - yh) ** 2).sum(1).mean())
    var = float((y ** 2).sum(1).mean() - (y.mean(0) ** 2).sum())
    ev = (1.0 if mse < 1e-10 else 0.0) if var < 1e-10 else 1.0 - mse / var
    ny, nh = np.linalg.norm(y, axis=1), np.linalg.norm(yh, axis=1)
    cos = float(((y * yh).sum(1) / (np.maximum(ny, 1e-8) * np.maximum(nh, 1e-8))).mean())
    density = (f != 0).sum(0) / n
    return {"n_rows": n, "mse": mse, "explained_variance": ev, "cossim": cos,
            "l2_ratio": float((nh / np.maximum(ny, 1e-8)).mean()),
            "l0": float((f != 0).sum(1).mean()), "l1": float(np.abs(f).sum(1).mean()),
            "dead_fraction": float((density == 0).mean()),
            "dense_fraction": float((density > 0.1).mean())}


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(F64).cpu().numpy()


# ------------------------------------------------------------------ inputs
class Data:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def x(self, d=D, n=N) -> np.ndarray:
        return self.rng.standard_normal((n, d)).astype(np.float32)

    def targets(self, x: np.ndarray, d_out=D) -> np.ndarray:
        A = self.rng.standard_normal((x.shape[1], d_out)) / np.sqrt(x.shape[1])
        return (np.tanh(x @ A) + 0.1 * self.rng.standard_normal((x.shape[0], d_out))).astype(np.float32)

    def fill(self, module: torch.nn.Module, thresholds=(), skip=()) -> None:
        """Seeded random weights (the producers initialise some to zero): small biases,
        positive thresholds, small skip matrices."""
        with torch.no_grad():
            for name, p in module.named_parameters():
                leaf = name.split(".")[-1]
                r = torch.randn(p.shape, generator=self.gen, dtype=torch.float64)
                if leaf in thresholds or "threshold" in name:
                    v = 0.05 + 0.3 * r.abs()
                elif leaf in skip:
                    v = 0.05 * r
                elif p.ndim <= 1 or leaf in ("r_mag",):
                    v = 0.1 * r
                else:
                    v = r / np.sqrt(max(p.shape[-1], 1))
                p.copy_(v.to(p.dtype))


def write_reference(folder: Path, **ref) -> None:
    ref["versions"] = versions()
    (folder / "reference.json").write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")


# ------------------------------------------------------------------ SAELens
def saelens(root: Path) -> None:
    import sae_lens as sl

    def one(name, cfg_cls, sae_cls, kind, d_out=None, thresholds=(), training=False, **cfg_kw):
        data = Data(zlib.crc32(name.encode()))
        base = root / name
        art = base / "artifact"
        kw = dict(d_in=D, d_sae=M, dtype="float32", device="cpu", **cfg_kw)
        if d_out is not None:
            kw["d_out"] = d_out
        sae = sae_cls(cfg_cls(**kw))
        data.fill(sae, thresholds=thresholds, skip=("W_skip",))
        if hasattr(sae, "topk_threshold"):  # a BatchTopK buffer (a trained value, not 0)
            sae.topk_threshold = torch.tensor(0.2, dtype=torch.double)
        if training:
            sae.save_inference_model(art)
        else:
            sae.save_model(art)
        x = data.x()
        acts = {"activations": x}
        if kind == "transcoder":
            acts["targets"] = data.targets(x, d_out or D)
        save_file(acts, str(base / "activations.safetensors"))
        ref_sae = sl.SAE.load_from_disk(art, device="cpu", dtype="float64")
        xt = torch.from_numpy(x).to(F64)
        with torch.no_grad():
            f = ref_sae.encode(xt)
            yh = ref_sae(xt)
        y = acts.get("targets", x)
        arch = json.loads((art / "cfg.json").read_text())["architecture"]
        write_reference(base, producer="SAELens", kind=kind, format="saelens",
                        saved_with="save_inference_model" if training else "save_model",
                        saelens_architecture=arch, metrics=metrics(y, np64(yh), np64(f)))

    one("saelens_standard", sl.StandardSAEConfig, sl.StandardSAE, "sae")
    one("saelens_standard_no_bdec", sl.StandardSAEConfig, sl.StandardSAE, "sae",
        apply_b_dec_to_input=False)
    one("saelens_jumprelu", sl.JumpReLUSAEConfig, sl.JumpReLUSAE, "sae")
    one("saelens_topk", sl.TopKSAEConfig, sl.TopKSAE, "sae", k=6)
    one("saelens_topk_rescale", sl.TopKSAEConfig, sl.TopKSAE, "sae", k=6,
        rescale_acts_by_decoder_norm=True)
    one("saelens_abstopk", sl.AbsTopKSAEConfig, sl.AbsTopKSAE, "sae", k=6)
    one("saelens_gated", sl.GatedSAEConfig, sl.GatedSAE, "sae")
    one("saelens_batchtopk", sl.BatchTopKTrainingSAEConfig, sl.BatchTopKTrainingSAE, "sae",
        training=True, k=6)
    one("saelens_matryoshka", sl.MatryoshkaBatchTopKTrainingSAEConfig,
        sl.MatryoshkaBatchTopKTrainingSAE, "sae", training=True, k=6, matryoshka_widths=[16, M])
    one("saelens_norm_constant", sl.StandardSAEConfig, sl.StandardSAE, "sae",
        normalize_activations="constant_norm_rescale")
    one("saelens_norm_layer", sl.StandardSAEConfig, sl.StandardSAE, "sae",
        normalize_activations="layer_norm")
    one("saelens_transcoder", sl.TranscoderConfig, sl.Transcoder, "transcoder", d_out=6,
        apply_b_dec_to_input=False)
    one("saelens_transcoder_norm_constant", sl.TranscoderConfig, sl.Transcoder, "transcoder",
        d_out=D, apply_b_dec_to_input=False, normalize_activations="constant_norm_rescale")
    one("saelens_skip_transcoder", sl.SkipTranscoderConfig, sl.SkipTranscoder, "transcoder",
        d_out=D, apply_b_dec_to_input=False)
    one("saelens_jumprelu_transcoder", sl.JumpReLUTranscoderConfig, sl.JumpReLUTranscoder,
        "transcoder", d_out=D, apply_b_dec_to_input=False)
    one("saelens_jumprelu_skip_transcoder", sl.JumpReLUSkipTranscoderConfig,
        sl.JumpReLUSkipTranscoder, "transcoder", d_out=D, apply_b_dec_to_input=False)

    # a folder of SAEs as SAELens' pretrained releases lay them out: one subfolder per hook
    data = Data(7)
    base = root / "saelens_release"
    acts, members = {}, {}
    for i, hook in enumerate(["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]):
        sae = sl.JumpReLUSAE(sl.JumpReLUSAEConfig(d_in=D, d_sae=M, dtype="float32", device="cpu"))
        sae.cfg.metadata.hook_name = hook
        data.fill(sae)
        sae.save_model(base / "artifact" / hook)
        x = data.x()
        acts[f"inputs_{i}"] = x
        ref = sl.SAE.load_from_disk(base / "artifact" / hook, device="cpu", dtype="float64")
        xt = torch.from_numpy(x).to(F64)
        with torch.no_grad():
            members[hook] = metrics(x, np64(ref(xt)), np64(ref.encode(xt)))
    save_file(acts, str(base / "activations.safetensors"))
    write_reference(base, producer="SAELens", kind="sae", format="saelens_set",
                    saved_with="save_model per hook", members=members)


# ------------------------------------------------------------------ circuit-tracer
def circuit_tracer(root: Path) -> None:
    from circuit_tracer.transcoder.activation_functions import JumpReLU
    from circuit_tracer.transcoder.cross_layer_transcoder import CrossLayerTranscoder, load_clt
    from circuit_tracer.transcoder.single_layer_transcoder import (
        SingleLayerTranscoder,
        TranscoderSet,
        load_transcoder_set,
    )

    def tset(name, jump, skip, n_layers=3):
        data = Data(zlib.crc32(name.encode()))
        base = root / name
        art = base / "artifact"
        tcs = {}
        for i in range(n_layers):
            act = JumpReLU(torch.zeros(M), 0.1) if jump else torch.nn.functional.relu
            tc = SingleLayerTranscoder(D, M, act, i, skip_connection=skip, device=torch.device("cpu"),
                                       dtype=torch.float32)
            data.fill(tc, skip=("W_skip",))
            tcs[i] = tc
        TranscoderSet(tcs, "hook_resid_mid", "hook_mlp_out", scan=name).to_safetensors(str(art))
        # the simplified config circuit-tracer's save_transcoders_to_cache writes beside the layers
        (art / "config.yaml").write_text(yaml.dump({
            "model_kind": "transcoder_set", "model_name": "fixture/tiny", "scan": name,
            "feature_input_hook": "hook_resid_mid", "feature_output_hook": "hook_mlp_out",
            "revision": None}))
        ref = load_transcoder_set({i: str(art / f"layer_{i}.safetensors") for i in range(n_layers)},
                                  scan=name, feature_input_hook="hook_resid_mid",
                                  feature_output_hook="hook_mlp_out", device=torch.device("cpu"),
                                  dtype=F64, lazy_encoder=False, lazy_decoder=False)
        acts, members = {}, {}
        for i in range(n_layers):
            x = data.x()
            y = data.targets(x)
            acts[f"inputs_{i}"], acts[f"targets_{i}"] = x, y
            xt = torch.from_numpy(x).to(F64)
            with torch.no_grad():
                f = ref[i].encode(xt)
                yh = ref[i].decode(f, xt)
            members[f"layer_{i}"] = metrics(y, np64(yh), np64(f))
        save_file(acts, str(base / "activations.safetensors"))
        write_reference(base, producer="circuit-tracer", kind="transcoder",
                        format="circuit_tracer_set", saved_with="TranscoderSet.to_safetensors",
                        members=members)

    tset("circuit_tracer_set_jumprelu_skip", jump=True, skip=True)
    tset("circuit_tracer_set_relu", jump=False, skip=False, n_layers=2)

    data = Data(11)
    base = root / "circuit_tracer_clt"
    L = 3
    clt = CrossLayerTranscoder(L, M, D, activation_function="jump_relu", lazy_decoder=False,
                               lazy_encoder=False, device=torch.device("cpu"), dtype=torch.float32)
    data.fill(clt)
    clt.to_safetensors(str(base / "artifact"))
    ref = load_clt(str(base / "artifact"), device=torch.device("cpu"), dtype=F64,
                   lazy_decoder=False, lazy_encoder=False)
    xs = [data.x() for _ in range(L)]
    ys = [data.targets(x) for x in xs]
    xt = torch.from_numpy(np.stack(xs)).to(F64)
    with torch.no_grad():
        feats = ref.encode(xt)
        yh = ref.decode(feats.to_sparse(), None)
    save_file({**{f"inputs_{l}": xs[l] for l in range(L)}, **{f"targets_{l}": ys[l] for l in range(L)}},
              str(base / "activations.safetensors"))
    write_reference(base, producer="circuit-tracer", kind="clt", format="circuit_tracer_clt",
                    saved_with="CrossLayerTranscoder.to_safetensors",
                    per_layer=[metrics(ys[l], np64(yh[l]), np64(feats[l])) for l in range(L)])


# ------------------------------------------------------------------ sparsify
def sparsify(root: Path) -> None:
    from sparsify import SparseCoder, SparseCoderConfig

    def coder(data, **cfg):
        sc = SparseCoder(D, SparseCoderConfig(**cfg), device="cpu", dtype=torch.float32)
        data.fill(sc, skip=("W_skip",))
        return sc

    def ref_out(sc, x, y):
        xt, yt = (torch.from_numpy(a).to(F64) for a in (x, y))
        with torch.no_grad():
            enc = sc.encode(xt)
            out = sc(xt, yt)
        f = torch.zeros(x.shape[0], sc.num_latents, dtype=F64).scatter_(1, enc.top_indices, enc.top_acts)
        return metrics(y, np64(out.sae_out), np64(f))

    for name, cfg in (("sparsify_topk", dict(k=6, num_latents=M)),
                      ("sparsify_groupmax", dict(k=6, expansion_factor=12, activation="groupmax")),
                      ("sparsify_skip_sae", dict(k=6, num_latents=M, skip_connection=True))):
        data = Data(zlib.crc32(name.encode()))
        base = root / name
        sc = coder(data, **cfg)
        sc.save_to_disk(base / "artifact")
        x = data.x()
        save_file({"activations": x}, str(base / "activations.safetensors"))
        ref = SparseCoder.load_from_disk(base / "artifact", device="cpu").to(F64)
        write_reference(base, producer="sparsify", kind="sae", format="sparsify",
                        saved_with="SparseCoder.save_to_disk", metrics=ref_out(ref, x, x))

    # a multi-hookpoint checkpoint folder, as its trainer saves it: one subfolder per hookpoint
    data = Data(13)
    base = root / "sparsify_multi"
    acts, members = {}, {}
    for i, hook in enumerate(["layers.0.mlp", "layers.1.mlp"]):
        sc = coder(data, k=6, num_latents=M, transcode=True, skip_connection=(i == 0))
        sc.save_to_disk(base / "artifact" / hook)
        x = data.x()
        y = data.targets(x)
        acts[f"inputs_{i}"], acts[f"targets_{i}"] = x, y
    for i, (hook, sc) in enumerate(SparseCoder.load_many(str(base / "artifact"), local=True).items()):
        members[hook] = ref_out(sc.to(F64), acts[f"inputs_{i}"], acts[f"targets_{i}"])
    save_file(acts, str(base / "activations.safetensors"))
    write_reference(base, producer="sparsify", kind="transcoder", format="sparsify_set",
                    saved_with="SparseCoder.save_to_disk per hookpoint", members=members)


# ------------------------------------------------------------------ Gemma Scope
def gemma_scope(root: Path) -> None:
    import sae_lens as sl

    data = Data(17)
    base = root / "gemma_scope"
    (base / "artifact").mkdir(parents=True, exist_ok=True)
    params = {"W_enc": (data.rng.standard_normal((D, M)) / np.sqrt(D)).astype(np.float32),
              "W_dec": (data.rng.standard_normal((M, D)) / np.sqrt(M)).astype(np.float32),
              "b_enc": (0.1 * data.rng.standard_normal(M)).astype(np.float32),
              "b_dec": (0.1 * data.rng.standard_normal(D)).astype(np.float32),
              "threshold": (0.05 + 0.3 * np.abs(data.rng.standard_normal(M))).astype(np.float32)}
    np.savez(base / "artifact" / "params.npz", **params)
    x = data.x()
    save_file({"activations": x}, str(base / "activations.safetensors"))
    # as SAELens' Gemma Scope loader reads it: no b_dec subtraction, JumpReLU
    sae = sl.JumpReLUSAE(sl.JumpReLUSAEConfig(d_in=D, d_sae=M, dtype="float64", device="cpu",
                                              apply_b_dec_to_input=False))
    with np.load(base / "artifact" / "params.npz", allow_pickle=False) as z:
        sae.load_state_dict({k: torch.tensor(z[k], dtype=F64) for k in z.files})
    xt = torch.from_numpy(x).to(F64)
    with torch.no_grad():
        m = metrics(x, np64(sae(xt)), np64(sae.encode(xt)))
    write_reference(base, producer="Gemma Scope (reference: SAELens JumpReLUSAE)", kind="sae",
                    format="gemma_scope", saved_with="numpy.savez", metrics=m)


# ------------------------------------------------------------------ dictionary_learning
def dictionary_learning(root: Path) -> None:
    spec = importlib.util.find_spec("dictionary_learning")
    if spec is None:
        print("dictionary-learning not installed: skipped", file=sys.stderr)
        return
    path = Path(spec.submodule_search_locations[0]) / "dictionary.py"
    mspec = importlib.util.spec_from_file_location("dl_dictionary", path)
    dl = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(dl)
    for cls in ("AutoEncoder", "AutoEncoderNew", "GatedAutoEncoder", "JumpReluAutoEncoder"):
        data = Data(zlib.crc32(cls.encode()))
        base = root / f"dictionary_learning_{cls}"
        (base / "artifact").mkdir(parents=True, exist_ok=True)
        ae = getattr(dl, cls)(D, M)
        data.fill(ae)
        torch.save(ae.state_dict(), base / "artifact" / "ae.pt")
        (base / "artifact" / "config.json").write_text(json.dumps(
            {"trainer": {"dict_class": cls, "activation_dim": D, "dict_size": M,
                         "note": "written by make_format_fixtures.py: no trainer was run"}}))
        x = data.x()
        save_file({"activations": x}, str(base / "activations.safetensors"))
        ref = getattr(dl, cls)(D, M)
        ref.load_state_dict(torch.load(base / "artifact" / "ae.pt", weights_only=True))
        ref = ref.to(F64)
        xt = torch.from_numpy(x).to(F64)
        with torch.no_grad():
            f = ref.encode(xt)
            yh = ref.decode(f)
        write_reference(base, producer="dictionary_learning", kind="sae",
                        format="dictionary_learning", saved_with="torch.save(ae.state_dict())",
                        dict_class=cls, metrics=metrics(x, np64(yh), np64(f)))


def main(out: str) -> None:
    root = Path(out)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    torch.manual_seed(0)
    for make in (saelens, circuit_tracer, sparsify, gemma_scope, dictionary_learning):
        make(root)
    (root / "VERSIONS.json").write_text(json.dumps(versions(), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/formats")
