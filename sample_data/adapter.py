"""Model adapter for the sample bank: ``sample_data.adapter:load``.

Given a registered version's weights file, returns the torch module (eval mode), its hook
points (``blocks.{i}.hook_resid_pre``, ``blocks.{i}.hook_mlp_out``, ``hook_resid_final``) and
the function that encodes a raw data frame into model inputs. Everything is read from the
safetensors file itself (weights + ``__metadata__``).
"""

from __future__ import annotations

import json
from pathlib import Path

from compliance.interp.adapter import LoadedModel

from .models import load_module


def load(weights_path: Path) -> LoadedModel:
    module, encoding, meta = load_module(Path(weights_path))
    metadata = {
        "format": meta["format"],
        "architecture": json.loads(meta["architecture"]),
        "feature_names": json.loads(meta["feature_names"]),
        "model_id": meta.get("model_id"),
        "version": meta.get("version"),
        "data_domain": meta.get("data_domain"),
    }
    return LoadedModel(
        module=module,
        hook_points=module.hook_points(),
        encode_inputs=encoding.encode,
        decision_threshold=float(meta["decision_threshold"]),
        label_column=meta.get("label_column") or None,
        metadata=metadata,
    )
