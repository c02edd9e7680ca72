"""Tests of lensing_core.sims."""
