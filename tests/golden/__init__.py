"""The golden run: a recorded run of the worker's processor, replayed byte for byte (run.py)."""
