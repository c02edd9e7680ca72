"""Simulation catalogs and convergence-map sources (no Dagster here)."""
