"""What every host must do alike, and the generators that write it from the Python package."""
