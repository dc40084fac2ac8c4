"""GMF / MLP / NeuMF: the NCF model family (see ``cluster/fl/families/__init__.py``)."""
