"""Ebbtide: retention deadlines and proven deletions on an event stream."""

__version__ = "0.1.0"
