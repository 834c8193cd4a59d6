"""Metrics, one per module: fidelity (torch-fidelity), features (feature spaces), likelihood, speed."""
