"""The words a failure is reported with, shared by every case it hits, and the hints that say what
to fix.  Each function returns a ``Cause``: failures with the same key are one root cause in the
reports, so a hub that refuses the handshake shows one line "handshake refused with HTTP 403",
blocking 95 cases, rather than 95 failures.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from empq.conformance.model import Case, Cause
from empq.conformance.schemas import default_schemas

ROLE_NAMES = {"job_client": "job client", "worker": "worker", "monitor": "monitor"}

GREETING = (
    "The reference's first frame on every connection is "
    '{"type": "connection_established", "message": ..., "server_version": ..., "timestamp": ...}.'
)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def per_role_hint(url: str) -> str:
    base = origin(url)
    return (
        "A hub that routes roles by URL path refuses them on one shared URL: give each role its own, "
        f"e.g. --client-url '{base}/ws/client/{{id}}' --worker-url '{base}/ws/worker/{{id}}' "
        f"--monitor-url '{base}/ws/monitor/{{id}}' (use the hub's paths; {{id}} becomes each "
        "connection's own client or worker id)."
    )


CREDENTIALS_HINT = (
    "The hub may want credentials on the handshake: --header 'Authorization: Bearer TOKEN', "
    "or the role tokens with --token-in header (or query)."
)


def handshake_refused(status: int, url: str, per_role_urls: bool) -> Cause:
    hint = ""
    if status in (400, 403, 404) and not per_role_urls:
        hint = per_role_hint(url)
    elif status in (401, 403):
        hint = CREDENTIALS_HINT
    elif status == 404:
        hint = "Check the path of the role's URL (--client-url / --worker-url / --monitor-url)."
    return Cause(f"handshake:{status}:{url}", f"handshake refused with HTTP {status} at {url}", hint)


def no_handshake(url: str, timeout: float) -> Cause:
    return Cause(f"handshake:timeout:{url}", f"no WebSocket handshake at {url} within {timeout:g} s")


def cannot_connect(url: str, exc: BaseException) -> Cause:
    what = f"{type(exc).__name__}: {exc}"
    errno = getattr(exc, "errno", None)
    return Cause(f"connect:{url}:{type(exc).__name__}:{errno}", f"cannot connect to {url} ({what[:160]})")


def closed(code: int | None, url: str, per_role_urls: bool, early: bool, sent: int) -> Cause:
    """The hub closed a connection: ``early`` = before answering anything (``sent`` frames sent)."""
    how = f"code {code}" if code is not None else "no close frame"
    if early:
        hint = per_role_hint(url) if not per_role_urls else CREDENTIALS_HINT
        when = "right after connecting" if sent == 0 else "at the first message, before answering"
        return Cause(
            f"closed-early:{code}:{sent == 0}:{url}", f"the hub closes the connection {when} ({how})", hint
        )
    return Cause(f"closed:{code}", f"the hub closes the connection ({how})")


def no_greeting() -> Cause:
    return Cause("greeting:none", "no connection_established: nothing arrives after the handshake", GREETING)


def other_greeting(kind: Any) -> Cause:
    return Cause(
        f"greeting:{kind}",
        f"greets with {kind}, not connection_established",
        GREETING + f" This hub sends {kind} first.",
    )


def unanswered(kind: str, replies: tuple[str, ...], seen: list[Any]) -> Cause:
    hint = f"The reference answers {kind} with {' or '.join(replies)}."
    if seen:
        hint += f" Received meanwhile: {', '.join(sorted({str(t) for t in seen}))}."
    return Cause(f"unanswered:{kind}", f"{kind} is not answered", hint)


def wrong_reply(kind: str, got: Any, replies: tuple[str, ...]) -> Cause:
    return Cause(
        f"wrong-reply:{kind}:{got}",
        f"{kind} is answered with {got}, not {' or '.join(replies)}",
        f"The reference answers {kind} with {' or '.join(replies)}.",
    )


def refused(kind: str, code: Any) -> Cause:
    return Cause(f"refused:{kind}:{code}", f"{kind} is refused with error {code}")


@cache
def peer_only_types() -> frozenset[str]:
    """Message types only peers send (no hub_to_* direction in the schemas)."""
    return frozenset(
        kind
        for kind, schema in default_schemas().messages.items()
        if not any(d.startswith("hub_to_") for d in schema.get("x-empq-directions", ()))
    )


def missing(kinds: tuple[str, ...], role: str, keys: list[str], received: list[dict[str, Any]]) -> Cause:
    """Nothing of ``kinds`` (with the fields ``keys``) reached a peer of ``role``."""
    who = ROLE_NAMES.get(role, role)
    forwarded = sorted({str(f.get("type")) for f in received if f.get("type") in peer_only_types()})
    if forwarded:
        return Cause(
            f"forwarded:{role}",
            f"the {who} receives other peers' own frames instead of the hub's notifications",
            f"It received {', '.join(forwarded)} (messages only peers send to the hub) where the "
            f"reference has the hub send {'/'.join(kinds)}: a worker's update_job_progress reaches "
            "the client as job_update, its complete_job as job_completed.",
        )
    what = "/".join(kinds) + (f" with {', '.join(keys)}" if keys else "")
    return Cause(f"missing:{'/'.join(kinds)}:{role}:{','.join(keys)}", f"no {what} reaches the {who}")


def not_json() -> Cause:
    return Cause("frame:not-json", "frames that are not JSON", "One JSON object per WebSocket text frame.")


def not_object() -> Cause:
    return Cause(
        "frame:not-object", "frames that are JSON but not an object", "Every message is a JSON object."
    )


def out_of_budget(step: str) -> Cause:
    where = neutral(step)
    return Cause(f"budget:{where}", f"the case does not finish in time (stuck {where})")


def from_case(case: Case, message: str) -> Cause:
    """A case's own assertion: cases failing with the same words share the cause."""
    words = neutral(message)
    return Cause(f"assert:{words}"[:300], words, case.hint)


def suite_error(case: Case, message: str) -> Cause:
    return Cause(f"suite-error:{case.id}", f"the suite broke in {case.id}: {message[:200]}")


def neutral(text: str) -> str:
    """``client-2: waiting for ...`` -> ``client: waiting for ...`` (the same words in every case)."""
    text = re.sub(r"\b(client|worker|monitor|raw|cleanup)-\d+\b", r"\1", text)
    text = re.sub(r"\bjob-[0-9a-f]{8,}\b", "job-…", text)
    return re.sub(r"\bconf-[a-z0-9-]+", "…", text)
