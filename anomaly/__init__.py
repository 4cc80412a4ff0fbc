"""anomaly room."""
