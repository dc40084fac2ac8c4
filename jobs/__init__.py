"""Entry points: each job is build -> run -> write."""
