"""The three tasks and the points per sample each one uses when a config does not say.

Free of torch (and of every other heavy import), so the command line can show these defaults
in `--help` without loading the library.
"""

TASKS = ("segmentation", "part_segmentation", "classification")

# The loaders' own defaults: S3DIS blocks of 4096 points, ModelNet shapes of 1024; PartNet's
# h5 shapes hold 10 000 points and are used whole.
DEFAULT_POINTS = {"segmentation": 4096, "classification": 1024, "part_segmentation": 10000}
