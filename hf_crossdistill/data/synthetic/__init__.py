"""data.synthetic."""
