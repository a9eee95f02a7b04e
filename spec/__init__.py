"""AsyncAPI 3.0 description of the hub, shipped as data."""
