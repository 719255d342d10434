"""scikit-learn–compatible user API."""

from vaekit.estimators.classifier import VAEClassifier
from vaekit.estimators.clustering import VAEClustering
from vaekit.estimators.vae import VAE

__all__ = ["VAE", "VAEClassifier", "VAEClustering"]
