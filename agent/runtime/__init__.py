"""Runtimes: execute a model bundle's model file (ONNX Runtime, LiteRT)."""
