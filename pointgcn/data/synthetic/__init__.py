"""Procedural data sets written in the published on-disk formats of the real ones.

Nothing can be downloaded here, so the embedded default data set is generated, and it is
written exactly as S3DIS (raw Annotations tree), ModelNet40 (raw OFF tree) and PartNet
(sem_seg_h5) are published: the real loaders run on it unchanged.

    write_rooms(out_dir, n_rooms=12, seed=0, areas=6)
        -> <out>/Stanford3dDataset_v1.2_Aligned_Version
    write_shapes(out_dir, n_per_class=20, seed=0, test_fraction=0.25) -> <out>/ModelNet40
    write_parts(out_dir, n_shapes=60, seed=0, n_points=2048) -> <out>/sem_seg_h5

Same arguments, same bytes. Each writer builds its tree in a hidden temp dir beside the target
and renames it into place at the end, so an interrupted run leaves no half data set. The target
carries the names of the real downloads, so it must be new or empty; `overwrite=True` replaces
only an earlier synthetic set that holds nothing else (common.synth_folder, its marker file).
"""
from .parts import PART_NAMES, write_parts
from .rooms import write_rooms
from .shapes import CLASSES as SHAPE_CLASSES, NAMES_FILE as SHAPE_NAMES_FILE, write_shapes

__all__ = ["write_rooms", "write_shapes", "write_parts", "SHAPE_CLASSES", "SHAPE_NAMES_FILE",
           "PART_NAMES"]
