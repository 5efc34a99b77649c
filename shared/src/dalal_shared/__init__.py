"""Dalal's shared kernel: what two or more services use."""

__version__ = "0.1.0"
