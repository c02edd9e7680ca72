"""Tests of ``lensing_core.dataset``."""
