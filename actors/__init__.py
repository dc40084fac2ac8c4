"""Thin Ray actors over the pure objects in cluster/."""
