"""Image data: sources, a deterministic hash split, and a uint8 cache.

load_split(DataConfig, "train" | "test", progress=None) -> ImageSet(images uint8 [N, H, W, 3], names,
source, stats)
describe_source(DataConfig) -> {"source", "root", "image_size", "files", "skipped", "train", "test"}
"""

from model.data.items import ImageSet
from model.data.load import describe_source, list_source, load_split

__all__ = ["ImageSet", "describe_source", "list_source", "load_split"]
