"""ONNX export with parity checks, onnxruntime inference, benchmarks, latency budgets, and the
one way to open a model for serving.

open_model       checkpoint / shipped name / .onnx (/ config YAML) → LoadedModel → predictor
export_onnx      model (any nn.Module with a `.cfg`) → checked, self-describing .onnx
OnnxPredictor    the `Predictor` interface on onnxruntime (CUDA if available, else CPU)
check_parity     static-graph numeric parity + label agreement at three point counts
quantize_model   int8 dynamic quantisation (a second file)
select_model     the most accurate candidate whose measured p95 latency fits a budget
"""
from .budget import Candidate, Selection, load_candidates, select_model
from .onnx_export import ExportReport, export_onnx
from .parity import check_parity
from .quantize import quantize_model
from .runtime import OnnxPredictor, read_metadata
from .serve import LoadedModel, open_model

__all__ = ["open_model", "LoadedModel", "export_onnx", "ExportReport", "OnnxPredictor",
           "read_metadata", "check_parity", "quantize_model", "select_model", "Selection",
           "Candidate", "load_candidates"]
