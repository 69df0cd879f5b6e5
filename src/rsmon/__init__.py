"""rsmon: satellite data to environmental monitoring products."""

__version__ = "0.1.0"
