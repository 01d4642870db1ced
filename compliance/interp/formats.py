"""The registry of what the loaders read and what they refuse, by producer (torch-free).

One row per producer x format x architecture or option. The detectors in
:mod:`compliance.interp.headers` refuse through :func:`refuse`, which quotes the row's reason,
so the error a user sees and the table in docs/artifact-formats.md (generated from
:data:`FORMATS` by :func:`markdown_table`, kept in step by tests/test_docs.py) say the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from compliance.errors import InputError


@dataclass(frozen=True)
class FormatEntry:
    producer: str  # the library that writes the files
    version: str  # the version the layout was read from
    format: str  # ArtifactInfo.format
    option: str  # architecture, activation or config setting
    status: str  # "read" | "refused"
    note: str  # how it is read, or why it is refused


R, X = "read", "refused"
SL, SLV = "SAELens", "6.54.12"
CT, CTV = "circuit-tracer", "0.5.0"
SP, SPV = "sparsify (eai-sparsify)", "1.3.3"
GS, GSV = "Gemma Scope", "release layout"
DL, DLV = "dictionary_learning", "0.1.0"

FORMATS: tuple[FormatEntry, ...] = (
    # ------------------------------------------------------------ SAELens
    FormatEntry(SL, SLV, "saelens", "standard", R, "ReLU(x' W_enc + b_enc) W_dec + b_dec"),
    FormatEntry(SL, SLV, "saelens", "jumprelu", R, "ReLU(pre) * [pre > threshold] (strict >)"),
    FormatEntry(SL, SLV, "saelens", "topk", R, "k largest pre-activations, then ReLU"),
    FormatEntry(SL, SLV, "saelens", "topk rescale_acts_by_decoder_norm", R,
                "pre-activations times the decoder row norms; decoder rows divided by them"),
    FormatEntry(SL, SLV, "saelens", "abstopk", R, "k largest |pre-activations|, signed values kept"),
    FormatEntry(SL, SLV, "saelens", "gated", R,
                "[x' W_enc + b_gate > 0] * ReLU(x' (W_enc * exp(r_mag)) + b_mag)"),
    FormatEntry(SL, SLV, "saelens", "batchtopk / matryoshka_batchtopk (inference save)", R,
                "save_inference_model writes them as jumprelu with a threshold: read as jumprelu"),
    FormatEntry(SL, SLV, "saelens", "batchtopk / matryoshka_batchtopk (training save)", X,
                "a training checkpoint (topk_threshold buffer, batch-dependent BatchTopK): "
                "save it with save_inference_model, which converts it to jumprelu"),
    FormatEntry(SL, SLV, "saelens", "transcoder", R, "no b_dec subtraction; d_out from cfg"),
    FormatEntry(SL, SLV, "saelens", "skip_transcoder", R, "adds x W_skip^T (W_skip [d_out, d_in])"),
    FormatEntry(SL, SLV, "saelens", "jumprelu_transcoder", R, "JumpReLU as above, transcoder"),
    FormatEntry(SL, SLV, "saelens", "jumprelu_skip_transcoder", R, "JumpReLU transcoder + W_skip"),
    FormatEntry(SL, SLV, "saelens", "other architectures (temporal, matching_pursuit, ...)", X,
                "not implemented here: its encode is not one of the above"),
    FormatEntry(SL, SLV, "saelens", "apply_b_dec_to_input", R, "x' = x - b_dec when true"),
    FormatEntry(SL, SLV, "saelens", "normalize_activations: none", R, "inputs used as they are"),
    FormatEntry(SL, SLV, "saelens", "normalize_activations: constant_norm_rescale", R,
                "x * sqrt(d_in)/||x|| in, divided back out (SAEs; transcoders only scale in)"),
    FormatEntry(SL, SLV, "saelens", "normalize_activations: layer_norm", R,
                "(x - mean)/(std + 1e-5) in (std unbiased), * std + mean out (SAEs only)"),
    FormatEntry(SL, SLV, "saelens", "normalize_activations: expected_average_only_in", X,
                "the scaling factor is not in the files: fold it into the weights "
                "(fold_activation_norm_scaling_factor) and save again"),
    FormatEntry(SL, SLV, "saelens", "normalize_activations: covariance_whitening", X,
                "the whitening statistics are not in the files: fold them "
                "(fold_activation_whitening) and save again"),
    FormatEntry(SL, SLV, "saelens", "reshape_activations: hook_z", R,
                "activations are given flattened [N, n_heads*d_head]: the reshape changes nothing"),
    FormatEntry(SL, SLV, "saelens_set", "folder of SAEs, one subfolder per hook", R,
                "registered as an artifact set, one member per subfolder"),
    # ------------------------------------------------------------ circuit-tracer
    FormatEntry(CT, CTV, "circuit_tracer_transcoder", "ReLU layer file", R,
                "W_enc [d_tc, d_model] (one row per feature), no b_dec subtraction"),
    FormatEntry(CT, CTV, "circuit_tracer_transcoder", "JumpReLU (activation_function.threshold)", R,
                "pre * [pre > threshold] (no ReLU: may be negative when threshold < 0)"),
    FormatEntry(CT, CTV, "circuit_tracer_transcoder", "W_skip", R, "adds x W_skip^T"),
    FormatEntry(CT, CTV, "circuit_tracer_transcoder", "log_thresholds", X,
                "circuit-tracer itself refuses it (load_relu_transcoder asserts it is absent)"),
    FormatEntry(CT, CTV, "circuit_tracer_set", "transcoder set folder (config.yaml, layer_{i})", R,
                "model_kind transcoder_set: an artifact set, one member per layer"),
    FormatEntry(CT, CTV, "circuit_tracer_clt", "cross-layer transcoder (W_enc_{i}, W_dec_{i})", R,
                "y_l = sum over i<=l of a_i W_dec_i[:, l-i] + b_dec_l"),
    FormatEntry(CT, CTV, "circuit_tracer_clt", "CLT W_skip", X,
                "circuit-tracer's to_safetensors does not save it; a file holding it is refused"),
    # ------------------------------------------------------------ sparsify
    FormatEntry(SP, SPV, "sparsify", "activation: topk", R,
                "ReLU then k largest; x - b_dec first unless transcode"),
    FormatEntry(SP, SPV, "sparsify", "activation: groupmax", R,
                "ReLU then the max of each of k contiguous groups of latents"),
    FormatEntry(SP, SPV, "sparsify", "transcode", R, "no b_dec subtraction"),
    FormatEntry(SP, SPV, "sparsify", "skip_connection", R, "adds x W_skip^T"),
    FormatEntry(SP, SPV, "sparsify", "multi_topk", R, "a training loss only: inference is top-k"),
    FormatEntry(SP, SPV, "sparsify", "normalize_decoder", R, "training only: rows stored as trained"),
    FormatEntry(SP, SPV, "sparsify", "num_latents / expansion_factor", R,
                "num_latents 0 means d_in * expansion_factor"),
    FormatEntry(SP, SPV, "sparsify_set", "multi-hookpoint folder (one subfolder per hookpoint)", R,
                "registered as an artifact set, one member per hookpoint"),
    # ------------------------------------------------------------ Gemma Scope
    FormatEntry(GS, GSV, "gemma_scope", "JumpReLU params.npz", R,
                "numpy.load(allow_pickle=False); W_enc [d_model, d_sae]; "
                "ReLU(pre) * [pre > threshold]; no b_dec subtraction"),
    # ------------------------------------------------------------ dictionary_learning
    FormatEntry(DL, DLV, "dictionary_learning", "AutoEncoder", R,
                "torch.load(weights_only=True); ReLU(encoder(x - bias)); decoder(f) + bias"),
    FormatEntry(DL, DLV, "dictionary_learning", "AutoEncoderNew", R,
                "ReLU(encoder(x)); decoder(f) (decoder has its own bias)"),
    FormatEntry(DL, DLV, "dictionary_learning", "GatedAutoEncoder", R,
                "gate [(x - decoder_bias) W^T + gate_bias > 0] times "
                "ReLU((x - decoder_bias) (W exp(r_mag))^T + mag_bias)"),
    FormatEntry(DL, DLV, "dictionary_learning", "JumpReluAutoEncoder", R,
                "ReLU(pre) * [pre > threshold], pre = x W_enc + b_enc"),
    FormatEntry(DL, DLV, "dictionary_learning", "other dictionary classes", X,
                "not implemented here (AutoEncoderTopK, BatchTopKSAE, MatryoshkaBatchTopKSAE of "
                "its trainers, and any other class)"),
)


def entry(format: str, option: str) -> FormatEntry:
    for e in FORMATS:
        if e.format == format and e.option == option:
            return e
    raise KeyError((format, option))


def refuse(where: str, format: str, option: str, detail: str = "") -> InputError:
    """The error for a refused option: names it and quotes the registry's reason."""
    e = entry(format, option)
    assert e.status == X, e
    what = detail or option
    return InputError(f"{where}: {e.producer} {what} is refused: {e.note}")


def markdown_table() -> str:
    """docs/artifact-formats.md's table, from :data:`FORMATS`."""
    lines = ["| producer | version | format | architecture / option | status | how, or why not |",
             "|---|---|---|---|---|---|"]
    for e in FORMATS:
        status = "read" if e.status == R else "**refused**"
        note = e.note.replace("|", "\\|")
        lines.append(f"| {e.producer} | {e.version} | `{e.format}` | {e.option} | {status} | {note} |")
    return "\n".join(lines) + "\n"
