"""Data: datasets, transforms and loaders."""
from .batch import ImageBatch
from .data_manager import DataManager, DatasetWrapper, build_data_loader

__all__ = ["DataManager", "DatasetWrapper", "ImageBatch", "build_data_loader"]
