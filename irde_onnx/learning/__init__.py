"""Learning the ridge head: moments, statistics, cross-validated choices, calibration."""
