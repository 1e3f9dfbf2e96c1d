"""int8 dynamic quantization of an exported model (onnxruntime.quantization, build side only).

It needs the ``onnx`` package, which the device does not have: that is why it lives here
and not beside the device's onnxruntime session.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["quantize_int8"]

_QUANTIZABLE_OPS = {"MatMul", "Gemm", "Conv"}
_QUANTIZED_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QLinearMatMul"}


def quantize_int8(source: Path, target: Path) -> bool:
    """Write an int8 dynamically quantized copy of an ONNX model; False when nothing was quantized.

    Training side only: onnxruntime.quantization needs the ``onnx`` package (the
    export extra). Only MatMul and Conv weights quantize: linear models and tree
    ensembles converted by skl2onnx use other operators and stay as they are.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not any(node.op_type in _QUANTIZABLE_OPS for node in onnx.load(str(source)).graph.node):
        return False  # quantize_dynamic also refuses graphs with no ai.onnx operator at all
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return any(node.op_type in _QUANTIZED_OPS for node in onnx.load(str(target)).graph.node)
