"""Loading, caching, generating and splitting recommendation data."""
