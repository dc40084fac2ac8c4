"""Ray Serve deployments and their HTTP models."""
