"""Command-line tools around the training library (labelling, inspection)."""
