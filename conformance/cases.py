"""The conformance cases: one module ``cases_<part>.py`` per part of the protocol reference.

Importing this module imports them in the reference's order, which registers every case in
``empq.conformance.model.REGISTRY`` (the order of ``--list`` and of the reports).
"""

import importlib

MODULES = (
    "connection",  # Connection Flow
    "registration",  # Client Registration
    "jobs",  # Job Management Messages
    "workers",  # Worker Communication
    "heartbeat",  # Worker Heartbeat and Status
    "subscriptions",  # Subscription Messages
    "notifications",  # Notification Messages, Service Messages
    "errors",  # Error Handling
    "limits",  # Message Size Limits
    "management",  # Connection Management
    "flow",  # Message Flow Examples
    "auth",  # Error Handling: authentication (only with tokens)
    "negative",  # bad input, never silence
)

for _name in MODULES:
    importlib.import_module(f"empq.conformance.cases_{_name}")
