"""Building and checking router graphs with the ``onnx`` package (base install, no torch)."""
