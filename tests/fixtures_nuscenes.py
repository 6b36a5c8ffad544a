"""Session fixtures: tiny synthetic nuScenes dataroots (owned by the nuScenes generator)."""
