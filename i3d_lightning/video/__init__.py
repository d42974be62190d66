"""Reading videos: ``decoding`` (frames and their rate; the only module that imports decord) and
``sampling`` (which frames and where: pure index arithmetic)."""
