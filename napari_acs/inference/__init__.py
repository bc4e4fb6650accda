"""Sliding-window prediction, TTA, device selection and post-processing."""
