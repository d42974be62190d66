"""Evaluation: the release's sample clip (``release_sample``), accuracy on a dataset (``run``), and the
reports a dataset evaluation prints and writes (``reports``)."""
