"""JSON Schemas (draft 2020-12) of every empq message: the protocol's source of truth, shipped as data."""
