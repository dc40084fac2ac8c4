"""Tests that need Ray, Serve or subprocesses live in sibling folders of unit/."""
