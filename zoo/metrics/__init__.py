"""Metrics, one per module: fidelity (FID, KID, precision/recall through torch-fidelity), features (the
feature spaces), coverage (modes and the recognisable share), density (density and coverage), memorisation (copies
of training images), likelihood (bits/dim) and speed (sampling speed and memory)."""
