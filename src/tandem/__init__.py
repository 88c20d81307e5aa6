"""Tandem: a self-hosted, end-to-end encrypted cloud drive with a two-way sync client."""

__version__ = "0.1.0"
