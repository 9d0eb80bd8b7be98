"""Model loading: the registry of model slots and the loaders behind it."""

from .registry import SLOTS, ModelNotFound, ModelSource, cache_dir, resolve

__all__ = ["SLOTS", "ModelNotFound", "ModelSource", "cache_dir", "resolve"]
