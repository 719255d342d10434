"""vaekit: cluster and classify image collections through variational autoencoders.

>>> from vaekit import VAE, load_dataset
"""

from vaekit._version import __version__
from vaekit.data import Dataset, load_dataset
from vaekit.estimators import VAE

__all__ = ["VAE", "Dataset", "__version__", "load_dataset"]
