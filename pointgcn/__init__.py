"""pointgcn: deep graph convolutional networks for 3D point clouds.

Stages live in sub-packages, each depending only on those before it in this list:
io → data → graph → nn → models → engine → export → viz → nas, above the small top-level
modules (errors, tasks, seeds, config, registry); docs/architecture.md, tests/test_layers.py.
"""
__version__ = "0.1.0"
