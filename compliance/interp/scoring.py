"""Scores of a model version on a data frame, through its adapter: sigmoid(logit) per row.

Used by the outcome checks when the labelled data has no score column: the check then scores
the rows with the registered version itself (torch lives here, never on the report path).
"""

from __future__ import annotations

import numpy as np
import torch

from .adapter import LoadedModel
from .downstream import _frame_batches, _logits, pick_device


def score_frame(model: LoadedModel, frame, *, batch_rows: int = 8192, device=None) -> np.ndarray:
    """Predicted probability of the event (``sigmoid(logit)``) for every row of ``frame``."""
    dev = pick_device(device)
    model.module.to(dev)
    parts = []
    with torch.no_grad():
        for _, x in _frame_batches(model, frame, batch_rows, dev):
            parts.append(torch.sigmoid(_logits(model, x)).cpu().numpy())
    return np.concatenate(parts).astype(np.float64)
