"""vaekit: cluster and classify image collections through variational autoencoders.

>>> from vaekit import VAE, VAEClassifier, VAEClustering, load_dataset

The public names are imported lazily (PEP 562), so ``vaekit --help`` and argument errors
answer without loading torch and scikit-learn.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from vaekit._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from vaekit.data import Dataset, load_dataset
    from vaekit.estimators import VAE, VAEClassifier, VAEClustering

_LAZY = {
    "VAE": "vaekit.estimators",
    "VAEClassifier": "vaekit.estimators",
    "VAEClustering": "vaekit.estimators",
    "Dataset": "vaekit.data",
    "load_dataset": "vaekit.data",
}

__all__ = ["VAE", "Dataset", "VAEClassifier", "VAEClustering", "__version__", "load_dataset"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
