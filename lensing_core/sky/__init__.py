"""Sky-map processing: HEALPix helpers, harmonic transforms, rotations, noise and tiles.

Modules
-------
healpix
    Checked HEALPix wrappers and the base-face pixel layout.
harmonics
    Analysis, band-limited synthesis and alm truncation (ducc0).
rotations
    Orientation schemes and harmonic-space rotation.
noise
    Shape-noise levels and harmonic-space noise realisations.
tiles
    ``extract_tiles`` (fast path), the per-output reference path and ``sky_coverage``.
"""
