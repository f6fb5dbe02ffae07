"""Metrics of a router's routing and of its decisions on held-out rows."""
