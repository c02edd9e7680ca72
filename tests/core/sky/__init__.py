"""Tests of lensing_core.sky."""
