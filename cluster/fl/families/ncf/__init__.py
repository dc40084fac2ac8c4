"""GMF / MLP / NeuMF on implicit feedback (``FAMILY``)."""

from cluster.fl.families.ncf.family import FAMILY

__all__ = ["FAMILY"]
