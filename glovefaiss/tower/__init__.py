"""tower."""
