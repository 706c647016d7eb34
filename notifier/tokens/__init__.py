"""Token lifecycle: secrets, hashing, and the store of the daemon's own tokens."""
