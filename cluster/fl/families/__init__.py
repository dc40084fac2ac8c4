"""Model families as plug-ins of the one FL engine. A family is its model maths
(``cluster/models/``), its server half (``ops.py``: ``ModelOps`` in ``base.py``, the cost model,
settings, merge and FedAvg over ``ClientUpdate`` arrays, evaluation summary) and its device half
(``worker.py``: a ``WorkerCore`` that trains, evaluates and names the vector a device is
clustered by), with its local training and upload encoding beside them.

- ``ncf/``: GMF / MLP / NeuMF on implicit feedback, leave-one-out HR/NDCG, private user vectors.
- ``click/``: DLRM / DIN on click labels, AUC, every parameter uploaded whole."""
