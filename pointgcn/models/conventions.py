"""What a model was trained on, beyond its weights: up axis, units and normalisation, typical
point spacing, the channels it expects.

Real files differ from training data in ways a user does not see (ModelNet's meshes are z up,
PointNet-family resampled files y up; scans come in metres or millimetres; some have no
colour). A checkpoint records these conventions (`meta["conventions"]`, written by the trainer;
`open_model` puts them in the run config under `conventions`), and engine/harmonise.py
checks an input against them before inference. Checkpoints from before derive them from their config
(`from_config`): the data set says the up axis, the task says the normalisation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

AXES = ("x", "y", "z")
# Up axis of each data-set layout when the config does not say (data.up_axis): S3DIS rooms and
# ModelNet's meshes (and trees of files made from them) are z up; the PointNet-family
# resampled text and h5 files and PartNet's shapes are y up.
UP_AXIS = {"s3dis": "z", "partnet": "y", "modelnet/tree": "z", "modelnet/resampled": "y",
           "modelnet/h5": "y", "modelnet/prepared": "z",
           "pyg/ShapeNet": "y"}  # PyG's ShapeNet is the y-up part benchmark; its ModelNet/S3DIS z
NORMALISATION = {"segmentation": "metres (1 m blocks, per-block NormalizeScale)",
                 "classification": "unit sphere (centred, largest distance 1)",
                 "part_segmentation": "unit bounding-box diagonal (centred)"}


@dataclass
class Conventions:
    task: str
    up_axis: str = "z"
    units: str | None = None  # "m" where coordinates keep their scale (scenes); else normalised
    normalisation: str = ""
    spacing: float | None = None  # median nearest-neighbour distance of training samples
    channels: list[str] = field(default_factory=list)

    @property
    def needs_colors(self) -> bool:
        return "r" in self.channels

    @property
    def needs_normals(self) -> bool:
        return "nx" in self.channels

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"{self.up_axis} up", self.normalisation]
        if self.spacing:
            parts.append(f"samples ~{self.spacing:.3g} {self.units or 'units'} apart")
        parts.append("channels " + " ".join(self.channels))
        return ", ".join(p for p in parts if p)


def channels_of(task: str, in_channels: int) -> list[str]:
    if task == "segmentation" and in_channels == 9:
        return ["x", "y", "z", "r", "g", "b", "x/room", "y/room", "z/room"]
    return ["x", "y", "z", "nx", "ny", "nz"][:in_channels] if in_channels <= 6 else \
        [f"c{i}" for i in range(in_channels)]


def from_config(run_config: dict, spacing: float | None = None,
                layout: str | None = None) -> Conventions:
    """The conventions a run config implies: data.up_axis, else the data set's (`layout` e.g.
    "modelnet/tree", else the data set name's default)."""
    data, model = run_config.get("data") or {}, run_config.get("model") or {}
    task = model.get("task", "segmentation")
    dataset = str(data.get("dataset") or "")
    default = UP_AXIS.get(layout or "", UP_AXIS.get(dataset, "z"))
    return Conventions(task=task, up_axis=data.get("up_axis") or default,
                       units="m" if task == "segmentation" else None,
                       normalisation=NORMALISATION.get(task, ""), spacing=spacing,
                       channels=channels_of(task, int(model.get("in_channels", 3))))


def conventions_of(run_config: dict) -> Conventions:
    """The recorded conventions of a run config (checkpoint or ONNX), else derived ones."""
    stored = run_config.get("conventions")
    if isinstance(stored, dict) and stored.get("task"):
        known = {k: stored[k] for k in Conventions.__dataclass_fields__ if k in stored}
        return Conventions(**known)
    return from_config(run_config)
