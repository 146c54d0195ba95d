"""Reference city platform: stands in for the city brain, but is a real service."""
