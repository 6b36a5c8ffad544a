"""models.deeplab."""
