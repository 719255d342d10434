"""Dataset registry and readers: built-in datasets, IDX, numpy files and image folders.

Everything here returns validated ``uint8 (N, C, H, W)`` images; bad input raises
:class:`vaekit.errors.DataError` with a one-line message that names the file and the fix.
"""

from vaekit.data.arrays import as_image_array
from vaekit.data.dataset import Dataset
from vaekit.data.registry import load_dataset

__all__ = ["Dataset", "as_image_array", "load_dataset"]
