"""Dagster definitions by domain: inputs, kappa maps, tiles, dataset, models, reports."""
