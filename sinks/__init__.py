"""Deletion executors: one module per kind of store."""
