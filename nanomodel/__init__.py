"""The nano text model: features, corpus, training, export to ONNX and TFLite."""
