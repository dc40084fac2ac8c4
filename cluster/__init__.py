"""The simulated world as plain Python, numpy and torch: data, tiers, models, FL maths.

Nothing under ``cluster/`` imports Ray except ``cluster/bootstrap.py``; a test keeps it so.
"""
