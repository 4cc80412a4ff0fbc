"""alerts room."""
