"""Inference: a CNN compressor of tiles, a Gaussian neural posterior, and the figure of merit.

Modules
-------
npe
    ``NPEConfig``, ``GaussianNPE`` (mean + Cholesky head), ``fit_npe`` with on-the-fly
    summaries and early stopping, ``save_npe`` / ``load_npe``.
fom
    FoM = 1/sqrt(det Cov), physical units, calibration (ellipse coverage), the
    ``fom_result.json`` record.
"""
