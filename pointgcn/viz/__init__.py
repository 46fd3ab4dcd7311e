"""Look at clouds, predictions and results: headless PNG rendering, an interactive viewer, plots.

Rendering tries Open3D's OffscreenRenderer, then Open3D's legacy EGL Visualizer (both in a child
process), then matplotlib; see `backends.py`. Plots are matplotlib Agg PNGs (`plots.py`).
"""
from .backends import BACKENDS, ENV_VAR, RenderError
from .interactive import has_display, show
from .palettes import class_colors, distinct_colors, error_colors, height_colors, palette_colors
from .render import RenderResult, cloud_field, render_png

__all__ = ["BACKENDS", "ENV_VAR", "RenderError", "RenderResult", "class_colors", "cloud_field",
           "distinct_colors", "error_colors", "has_display", "height_colors", "palette_colors",
           "render_png", "show"]
