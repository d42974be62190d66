"""Video decoding, input files and datasets."""
