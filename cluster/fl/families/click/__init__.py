"""DLRM / DIN: the click model family (see ``cluster/fl/families/__init__.py``)."""
