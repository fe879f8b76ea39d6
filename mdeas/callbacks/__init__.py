"""Training callbacks and checkpoint I/O."""
