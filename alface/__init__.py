"""alface: human-in-the-loop active learning on faces."""

__version__ = "0.1.0"
