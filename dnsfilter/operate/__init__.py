"""The operate package."""
