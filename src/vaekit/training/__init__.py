"""The one training loop shared by every model."""

from vaekit.training.loop import TrainConfig, TrainResult, resolve_device, train

__all__ = ["TrainConfig", "TrainResult", "resolve_device", "train"]
