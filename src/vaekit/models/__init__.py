"""``torch.nn.Module`` models sharing one contract: ``encode``, ``decode``, ``loss``.

No optimiser, I/O or printing lives here; the training loop reads only ``LossOutput``.
"""

from vaekit.models.base import GenerativeModel, LossOutput, Posterior
from vaekit.models.m2 import M2Module
from vaekit.models.vae import VAEModule

__all__ = ["GenerativeModel", "LossOutput", "M2Module", "Posterior", "VAEModule"]
