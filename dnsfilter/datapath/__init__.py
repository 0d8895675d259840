"""The datapath package."""
