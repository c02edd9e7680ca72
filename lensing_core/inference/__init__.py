"""Inference: the field-level compressor, the Gaussian NPE and the figure of merit.

Modules
-------
config
    ``CompressorConfig`` (frozen dataclass, real defaults, unknown keys an error) and the
    precision choice.
compressor
    timm backbone + regression head as a ``LightningModule``; tile augmentation; loading a
    checkpoint with clear errors.
training
    ``fit_compressor`` (Lightning ``Trainer``, atomic best/last checkpoints, resume,
    ``norm_stats.json``, ``split.json``, ``result.json``) and ``evaluate_r2``.
npe
    Gaussian NPE on the compressor's summaries.
fom
    Figure of merit and calibration.

Importing this package imports nothing heavy; import the modules you need.
"""
