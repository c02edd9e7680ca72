"""Tests of the Dagster wiring and behaviour."""
