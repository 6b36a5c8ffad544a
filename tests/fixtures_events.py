"""Session fixtures: tiny synthetic event recordings (owned by the event simulator / worlds)."""
