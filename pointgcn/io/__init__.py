"""Reading and writing point clouds and meshes.

`read_points(path)` reads any supported file (PLY, PCD, XYZ/TXT/CSV/PTS, NPY/NPZ, LAS/LAZ with
laspy; meshes OFF/OBJ/STL/PLY-with-faces are sampled); `write_points(path, cloud)` writes .ply,
.las/.laz, .npy, .npz or .txt by suffix. Bad files raise `pointgcn.errors.InputError` /
`FormatError` with one-line messages.
"""
from .atomic import atomic_path, check_writable
from .cloud import PointCloud
from .read import SUPPORTED, ReadReport, read_points
from .write import (WRITERS, npy_columns, output_fields, ply_safe_fields, write_npy, write_npz,
                    write_ply, write_points, write_txt)

__all__ = ["PointCloud", "ReadReport", "SUPPORTED", "WRITERS", "atomic_path", "check_writable",
           "npy_columns", "output_fields", "ply_safe_fields", "read_points", "write_npy",
           "write_npz", "write_ply", "write_points", "write_txt"]
