"""Data sets (S3DIS, ModelNet40, PartNet) in their published layouts, transforms, sampling, and
the blocks of whole rooms with per-point vote sums (a model runs over them in
pointgcn.engine.inference). The procedural data sets live in `pointgcn.data.synthetic`
(imported on demand)."""
from .blocks import POSITION_NORMS, apply_position_norm, block_channels
from .classes import MODELNET40_CLASSES, PARTNET_PARTS, S3DIS_CLASSES, partnet_num_classes
from .modelnet import ModelNet40, find_modelnet, prepare_modelnet40
from .partnet import PartNetSemSeg, find_partnet, prepare_partnet
from .rooms import BlockPlan, VoteAccumulator, iter_blocks, plan_blocks, room_to_blocks
from .s3dis import S3DIS, find_s3dis, iter_rooms, prepare_s3dis, room_cloud
from .sampling import farthest_point_sample, random_sample, voxel_subsample
from .transforms import (jitter, normalize_scale, normalize_unit_sphere, point_dropout,
                         rotate_z, scale_anisotropic, shuffle, translate)

__all__ = [
    "BlockPlan", "MODELNET40_CLASSES", "ModelNet40", "PARTNET_PARTS", "POSITION_NORMS",
    "PartNetSemSeg", "S3DIS", "S3DIS_CLASSES", "VoteAccumulator", "apply_position_norm",
    "block_channels", "farthest_point_sample", "find_modelnet", "find_partnet", "find_s3dis",
    "iter_blocks", "iter_rooms", "jitter", "normalize_scale", "normalize_unit_sphere",
    "partnet_num_classes", "plan_blocks", "point_dropout", "prepare_modelnet40",
    "prepare_partnet", "prepare_s3dis", "random_sample", "room_cloud", "room_to_blocks",
    "rotate_z", "scale_anisotropic", "shuffle", "translate", "voxel_subsample",
]
