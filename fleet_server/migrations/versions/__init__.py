"""Revisions of the fleet server schema, oldest first: NNNN_<what>.py (see ../__init__.py)."""
