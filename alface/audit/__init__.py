"""The audit of footage: group shares from a classifier's outputs, with honest error bars.

``quantify`` (raw, adjusted and probabilistic adjusted counts, bootstrap intervals, stability
diagnostics, which estimate leads), ``ppi`` (prediction-powered inference with a small labeled
gold sample) and ``programme`` (synthetic programmes with known shares, to measure them).
Import the submodules directly: this package imports nothing itself.
"""
