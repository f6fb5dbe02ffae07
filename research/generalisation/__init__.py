"""Which input view and pooled layers the trainer defaults to (see README.md)."""
