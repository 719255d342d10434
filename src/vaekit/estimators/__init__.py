"""scikit-learn–compatible user API."""

from vaekit.estimators.vae import VAE

__all__ = ["VAE"]
