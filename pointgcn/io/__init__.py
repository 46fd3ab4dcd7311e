"""Reading and writing point clouds and meshes."""
from .atomic import atomic_path
from .cloud import PointCloud

__all__ = ["PointCloud", "atomic_path"]
