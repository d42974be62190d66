"""Fréchet Video Distance equal to TensorFlow's: the TF1 resize, the embedding, the float64 distances and
the torchmetrics metric."""
