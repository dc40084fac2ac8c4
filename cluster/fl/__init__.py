"""Federated learning maths: selection, local training, aggregation, metrics."""
