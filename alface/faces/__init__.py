"""Faces: robust image and video loading, MTCNN detection, crops, and the preprocess pipeline.

Import the submodules directly (``alface.faces.pipeline``, ``alface.faces.images``, ...):
this package imports nothing itself, so the decoding worker processes, which need only
``alface.faces.images``, start without torch.
"""
