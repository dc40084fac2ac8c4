"""Fairness measures across device tiers and clients."""
