"""wss:// with --tls-cert/--tls-key (a self-signed certificate made by openssl for the test)."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
from websockets.asyncio.client import connect

from empq import protocol

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


@pytest.fixture
def certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_hub_serves_wss(redis_url, certificate):
    from conftest import hub_config
    from empq.hub.server import HubServer

    cert, key = certificate
    server = HubServer(hub_config(redis_url, tls_cert=str(cert), tls_key=str(key)))
    await server.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        async with connect(f"wss://127.0.0.1:{server.port}", ssl=context, compression=None) as ws:
            greeting = protocol.parse_from_hub(await ws.recv())
            assert greeting.type == "connection_established"
        with pytest.raises(Exception):  # noqa: B017 - a plain client cannot speak to a TLS endpoint
            async with connect(f"ws://127.0.0.1:{server.port}", open_timeout=3) as ws:
                await ws.recv()
    finally:
        await server.stop()
