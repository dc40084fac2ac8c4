"""Device tiers: latency profiles, RF² tier mapping, heterogeneity measures, the population."""
