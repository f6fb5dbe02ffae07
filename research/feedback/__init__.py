"""Learning from traffic, issue 19 (see README.md)."""
