"""Export for deployment: TorchScript and ONNX, each checked against PyTorch (``formats``)."""
