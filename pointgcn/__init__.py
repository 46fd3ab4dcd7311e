"""pointgcn: deep graph convolutional networks for 3D point clouds.

Stages live in sub-packages, each depending only on those above it in this list:
io → data → graph → nn → models → engine → nas → export → viz (see docs/architecture.md).
"""
__version__ = "0.1.0"
