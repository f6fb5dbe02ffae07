"""One-off studies that fixed a design choice (see research/README.md)."""
