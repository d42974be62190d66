"""Reading videos: ``decoding`` (frames and their rate; the only module that imports decord),
``checking`` (whether files decode, each in a child process) and ``sampling`` (which frames and where:
pure index arithmetic)."""
