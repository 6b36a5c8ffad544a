"""models.translation."""
