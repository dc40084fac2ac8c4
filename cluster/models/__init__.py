"""Recommender models as batched per-client tensor maths."""
