"""empq: the EmProps Job Queue hub, its protocol models, SDK and tools."""

__version__ = "0.1.0"
