"""Ebbtide's stream processing: the pure policy core (``streams.policy``) and the Faust shell."""
