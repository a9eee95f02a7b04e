"""Eight dialects of the protocol, each the reference hub (base.py) deviating in exactly one way,
and ``AllEight``, which deviates in all of them at once (like the hubs issue 13 was tried on)."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .base import Conn, Job, ReferenceHub

ROLE_PATH = re.compile(r"^/ws/(client|worker|monitor)/[^/?]+$")


class PathRouted(ReferenceHub):
    """Roles are routed by URL path, /ws/{client|worker|monitor}/{id}; any other path gets 403."""

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if ROLE_PATH.match(request.path):
            return None
        return connection.respond(HTTPStatus.FORBIDDEN, "connect to /ws/{client|worker|monitor}/{id}\n")


class OtherGreeting(ReferenceHub):
    """Greets with system_status (and only a message) instead of connection_established."""

    def greeting(self) -> dict[str, Any]:
        return self.frame("system_status", message="connected")


class FloatSeconds(ReferenceHub):
    """Timestamps in float seconds (time.time()) instead of integer milliseconds."""

    def stamp(self, ms: int) -> int | float:
        return ms / 1000


class Lifo(ReferenceHub):
    """Among equal priorities the newest job is assigned first."""

    def pick(self, queued: list[Job]) -> Job:
        return min(queued, key=lambda j: (-j.priority, -j.seq))


class Forwarding(ReferenceHub):
    """The worker's update_job_progress and complete_job reach the client as they are."""

    async def relay_progress(self, job: Job, msg: dict[str, Any]) -> None:
        await self.send(job.client, msg)

    async def relay_completion(self, job: Job, msg: dict[str, Any]) -> None:
        await self.send(job.client, msg)


class NoPong(ReferenceHub):
    """ping is never answered."""

    async def on_ping(self, conn: Conn, msg: dict[str, Any]) -> None:
        pass


class UnknownAsError(ReferenceHub):
    """A message of an unknown type is answered with an error, not with unknown."""

    async def on_unknown(self, conn: Conn, raw: str | bytes) -> None:
        await self.error(conn, {}, "INVALID_PARAMETERS", "unknown message type")


class NoCancelReply(ReferenceHub):
    """cancel_job is never answered (nor carried out)."""

    async def on_cancel_job(self, conn: Conn, msg: dict[str, Any]) -> None:
        pass


class AllEight(
    PathRouted, OtherGreeting, FloatSeconds, Lifo, Forwarding, NoPong, UnknownAsError, NoCancelReply
):
    """Every deviation above at once."""


DIALECTS: dict[str, type[ReferenceHub]] = {
    "path_routed": PathRouted,
    "other_greeting": OtherGreeting,
    "float_seconds": FloatSeconds,
    "lifo": Lifo,
    "forwarding": Forwarding,
    "no_pong": NoPong,
    "unknown_as_error": UnknownAsError,
    "no_cancel_reply": NoCancelReply,
}


def role_urls(url: str) -> dict[str, str]:
    """The per-role URLs of a path-routed hub at ``url``."""
    return {f"{role}_url": f"{url}/ws/{role}/{{id}}" for role in ("client", "worker", "monitor")}
