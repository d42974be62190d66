"""Evaluation: the release's sample clip, accuracy on a dataset, and the reports a run writes."""
