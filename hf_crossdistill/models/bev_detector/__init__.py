"""models.bev_detector."""
