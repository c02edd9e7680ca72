"""Tests of lensing_core.inference."""
