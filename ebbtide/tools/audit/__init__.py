"""What ``ebbtide audit`` runs on the decision log: the hash chain check (:mod:`.chain`,
:mod:`.verdict`) and the reading it needs (:mod:`.reading`)."""
