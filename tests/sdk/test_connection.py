"""``empq.connection``: the connection core the job client and the worker share, with public
names; ``empq.client`` re-exports what users import from it; importing the SDK loads no message
model until one is used (the connection itself is exercised by test_client.py and test_worker.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from empq import client, connection, worker


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_client_and_worker_share_the_connection_core():
    for name in connection.__all__:
        if hasattr(client, name):
            assert getattr(client, name) is getattr(connection, name), name
    for name in (
        "AuthFailed",
        "Backoff",
        "ConnectionLost",
        "EmpqError",
        "HubConnection",
        "HubError",
        "HubUnreachable",
        "RequestTimeout",
        "DEFAULT_HUB_URL",
    ):
        assert name in client.__all__ and getattr(client, name) is getattr(connection, name)
    assert issubclass(client.EmpQueueClient, connection.HubConnection)
    assert issubclass(worker.EmpWorker, connection.HubConnection)
    assert issubclass(connection.AuthFailed, connection.HubError)


def test_job_event_is_available_at_run_time():
    from empq.generated.messages.job_cancelled import JobCancelled
    from empq.generated.messages.job_completed import JobCompleted
    from empq.generated.messages.job_update import JobUpdate

    assert set(client.JobEvent.__args__) == {JobUpdate, JobCompleted, JobCancelled}


def test_the_worker_does_not_need_the_job_client():
    assert "empq.client" not in modules_after("import empq.worker")


def test_importing_the_client_loads_no_message_model():
    modules = modules_after("import empq.client")
    assert {"empq.connection", "empq.protocol"} <= modules
    assert not [m for m in modules if m.startswith(("empq.generated.messages", "empq.generated.envelopes"))]
