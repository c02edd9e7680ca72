"""Dagster definitions by domain: partitions, resources, kappa, tiles."""
