"""What moves issue 9's missed targets (see README.md)."""
