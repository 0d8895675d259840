"""The observe package."""
