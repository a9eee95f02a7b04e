"""Who may register as what (spec D4): tokens per role from settings or a file.

No token configured anywhere means open dev mode: every registration is accepted and gets the
permissions it asks for.  Otherwise a registration must present a token of the role it asks
for — in the handshake (``Authorization: Bearer``, ``?token=``) or as ``auth_token`` — and gets
the customer binding and permissions that token carries.

The auth file may also give a customer its own webhook signing secret (spec D21):
``{"tokens": [...], "customers": {"acme": {"webhook_secret": "whsec_..."}}}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from empq.hub.config import HubConfig

from empq.webhooks import secret_key

ALL_PERMISSIONS = frozenset({"view_all_jobs", "view_system_stats", "view_workers", "manage_jobs"})


@dataclass(frozen=True)
class Grant:
    role: str  # job_client | worker | monitor
    customer_id: str | None = None
    permissions: frozenset[str] = frozenset()
    # who registered: a digest of the token ('' in open dev mode). A worker id is bound to the
    # owner that registered it while its registration lives (hub/lua/register_worker.lua)
    owner: str = ""


class Authenticator:
    def __init__(self, tokens: dict[str, Grant], webhook_keys: dict[str | None, bytes] | None = None) -> None:
        self.tokens = tokens
        # webhook signing keys (D21): per customer from the auth file, the hub's under None
        self.webhook_keys = webhook_keys or {}
        # customers some token is bound to: only those tokens act for them (D19); any other
        # customer id is a label an unbound client may use to group its own jobs
        self.bound_customers = frozenset(g.customer_id for g in tokens.values() if g.customer_id)

    @property
    def open(self) -> bool:
        return not self.tokens

    @classmethod
    def from_config(cls, config: HubConfig) -> Authenticator:
        tokens: dict[str, Grant] = {}
        keys: dict[str | None, bytes] = {}
        if config.webhook_secret:
            keys[None] = secret_key(config.webhook_secret)
        monitor_perms = frozenset(p.strip() for p in config.monitor_permissions.split(",") if p.strip())
        for role, raw, perms in (
            ("job_client", config.client_tokens, frozenset[str]()),
            ("worker", config.worker_tokens, frozenset[str]()),
            ("monitor", config.monitor_tokens, monitor_perms),
        ):
            for token in (t.strip() for t in raw.split(",")):
                if token:
                    tokens[token] = Grant(role, None, perms, _owner(token))
        if config.auth_file:
            data = json.loads(Path(config.auth_file).read_text(encoding="utf-8"))
            for entry in data.get("tokens", []):
                perms = frozenset(entry.get("permissions", []))
                unknown = perms - ALL_PERMISSIONS
                if unknown:
                    raise ValueError(f"{config.auth_file}: unknown permissions {sorted(unknown)}")
                if entry["role"] not in ("job_client", "worker", "monitor"):
                    raise ValueError(f"{config.auth_file}: unknown role {entry['role']!r}")
                token = entry["token"]
                tokens[token] = Grant(entry["role"], entry.get("customer_id"), perms, _owner(token))
            for customer, settings in data.get("customers", {}).items():
                if settings.get("webhook_secret"):
                    try:
                        keys[customer] = secret_key(settings["webhook_secret"])
                    except ValueError as exc:
                        raise ValueError(f"{config.auth_file}: customer {customer!r}: {exc}") from None
        return cls(tokens, keys)

    def webhook_key(self, customer_id: str | None) -> bytes | None:
        """The key that signs the webhooks of a customer's jobs: its own, else the hub's (D21)."""
        own = self.webhook_keys.get(customer_id) if customer_id else None
        return own if own is not None else self.webhook_keys.get(None)

    def may_name(self, grant: Grant, customer_id: str | None) -> bool:
        """May a session of this grant act for ``customer_id`` (None: its own, if any)?"""
        if customer_id is None or customer_id == grant.customer_id or self.open:
            return True
        return grant.customer_id is None and customer_id not in self.bound_customers

    def check(self, role: str, token: str | None) -> Grant | None:
        """The grant for ``token`` if it is one of ``role``'s; None = refused."""
        if self.open:
            return Grant(role, None, ALL_PERMISSIONS)
        grant = self.tokens.get(token or "")
        if grant is None or grant.role != role:
            return None
        return grant


def _owner(token: str) -> str:
    return "tok:" + hashlib.sha256(token.encode()).hexdigest()[:24]


def handshake_token(path: str, authorization: str | None) -> str | None:
    """The token a peer presented on the WebSocket handshake, if any."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    query = parse_qs(urlparse(path).query)
    values = query.get("token")
    return values[0] if values else None
