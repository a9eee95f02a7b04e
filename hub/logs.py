"""The hub's log: events a person operating it wants to read, as text or one JSON object a line.

Events carry their fields as ``extra`` (``event``, ``role``, ``peer_id``, ``customer``, ``address``,
``job_id``...): the text format shows the message, the JSON format the message and every field,
for log shippers. The WebSocket and HTTP libraries' own lines (a line per connection opened and
closed, naming no peer) are kept below INFO; the hub logs connections itself at DEBUG.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from empq.hub.session import Session

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
QUIET = ("websockets", "websockets.server", "uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup(level: str, fmt: str = "text") -> None:
    """The root handler (stderr) at ``level``; libraries' connection chatter below INFO."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        for name in QUIET:
            logging.getLogger(name).setLevel(logging.WARNING)


def event(session: Session, name: str) -> dict[str, Any]:
    """A peer event's fields (``extra=`` of a log call): what, who, whose, from where."""
    return {
        "event": name,
        "role": session.role.value,
        "peer_id": session.peer_id,
        "customer": session.customer_id,
        "address": session.address,
    }
