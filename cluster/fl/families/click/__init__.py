"""DLRM / DIN on click labels (``FAMILY``)."""

from cluster.fl.families.click.family import FAMILY

__all__ = ["FAMILY"]
