"""Inference: the field-level compressor, the Gaussian NPE and the figure of merit.

A compressor (a timm backbone with a regression head) maps the tiles of one configuration to
standardised (Omega_m, S8) summaries; a Gaussian neural posterior estimator conditioned on
them gives the posteriors whose figure of merit and calibration make the report. Importing
this package imports nothing heavy; import the modules you need.
"""
