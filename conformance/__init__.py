"""empq conformance suite: replays the protocol reference's flows against any hub URL.

It never imports ``empq.hub``: it knows the hub only through the wire and the JSON Schemas.
"""
