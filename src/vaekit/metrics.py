"""Evaluation metrics. Names match the keys of ``metrics.json`` (design.md)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class _Generative(Protocol):
    def score_samples(self, X: Any) -> np.ndarray: ...
    def reconstruction_errors(self, X: Any) -> dict[str, float]: ...


def generative_metrics(model: _Generative, x: Any) -> dict[str, float]:
    """Test-split metrics of a generative model, per image (nats / squared error).

    Returns
    -------
    dict
        ``elbo`` (mean ELBO, nats, higher is better), ``reconstruction_mse`` and
        ``reconstruction_bce`` (summed over pixels, mean over images, from posterior means).
    """
    return {"elbo": float(np.mean(model.score_samples(x))), **model.reconstruction_errors(x)}
