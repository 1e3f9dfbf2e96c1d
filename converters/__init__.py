"""edge-runtime converters: the training side.

Turn a fitted scikit-learn model (or an ONNX file from elsewhere) into a bundle
that the device runtime loads. Needs the ``export`` extra
(``pip install 'edge-runtime[export]'``) for scikit-learn models.
"""

from converters.export import export
from converters.manifest import ExportResult
from converters.onnx_file import bundle_onnx
from converters.parity import ParityPolicy
from edge_runtime.errors import ExportError, ParityError, UnsupportedModelError

__all__ = ["ExportError", "ExportResult", "ParityError", "ParityPolicy", "UnsupportedModelError", "bundle_onnx",
           "export"]
