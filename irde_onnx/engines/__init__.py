"""Engines that compute statistics beyond one process (Ray)."""
