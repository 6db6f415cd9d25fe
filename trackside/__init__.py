"""Trackside: turn a Python class into an authenticated, versioned HTTP service."""

__version__ = "0.1.0"
