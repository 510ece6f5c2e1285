"""Operator tools run from the command line: one module per tool."""
