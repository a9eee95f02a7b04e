"""Fake hubs that each speak one dialect of the protocol (test fixtures for the conformance suite)."""

from .base import CORE, ReferenceHub
from .dialects import DIALECTS, AllEight, role_urls

__all__ = ["CORE", "DIALECTS", "AllEight", "ReferenceHub", "role_urls"]
