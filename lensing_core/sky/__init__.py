"""Sky-map processing: HEALPix helpers, harmonic transforms, rotations, noise and tiles.

Full-sky maps are HEALPix in RING ordering, stacked as ``(n_bins, npix)``; harmonic transforms
run on ducc0 with the healpy alm layout. Flat tiles are cut from the equatorial base faces of
band-limited maps in several orientations, with shape noise drawn in harmonic space.
"""
