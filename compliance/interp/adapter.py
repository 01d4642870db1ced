"""Model adapters: how a check gets a runnable torch module for a registered model version.

A model record names its adapter as an import path ``"package.module:callable"``
(e.g. ``sample_data.adapter:load``). The callable takes the path of the version's
weights file (already hash-verified by the caller) and returns a :class:`LoadedModel`.

Hook points follow TransformerLens' convention: each is an identity ``nn.Module`` placed
in the forward pass, so a forward hook on it can read the activation (capture) or return
a replacement (splice). For the residual-MLP models of this project the names are
``blocks.{i}.hook_resid_pre`` (block input, residual stream), ``blocks.{i}.hook_mlp_out``
(MLP output added back to the stream) and ``hook_resid_final``. SAEs read a residual hook;
transcoders and CLT layers read ``blocks.{i}.hook_resid_pre`` and reconstruct
``blocks.{i}.hook_mlp_out``.

The model's output is one logit per row for a binary decision (default, fraud...):
the output distribution is Bernoulli(sigmoid(logit)) and the decision is
``sigmoid(logit) >= decision_threshold``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from compliance.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch


@dataclass
class LoadedModel:
    module: "torch.nn.Module"  # in eval mode; forward(x [N, n_inputs]) -> logits [N]
    hook_points: dict[str, "torch.nn.Module"]  # name -> identity module in the forward pass
    encode_inputs: Callable[["pd.DataFrame"], "torch.Tensor"]  # raw data frame -> model input
    decision_threshold: float = 0.5
    label_column: str | None = None  # column of the data frame holding the 0/1 label, if any
    metadata: dict = field(default_factory=dict)


def resolve_adapter(spec: str) -> Callable[[Path], LoadedModel]:
    """Import ``"module:callable"`` and return the callable (clear error if it fails)."""
    if not spec or ":" not in spec:
        raise InputError(f"adapter {spec!r} is not of the form 'package.module:callable'")
    mod_name, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InputError(f"cannot import adapter module {mod_name!r}: {exc}") from None
    fn = getattr(mod, attr, None)
    if fn is None or not callable(fn):
        raise InputError(f"adapter {spec!r}: {attr!r} not found or not callable")
    return fn
