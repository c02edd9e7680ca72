"""Tests of lensing_core.plotting."""
