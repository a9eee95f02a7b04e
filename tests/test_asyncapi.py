"""spec/asyncapi.yaml: valid AsyncAPI 3.0, complete, and in step with schemas/ and spec/README.md."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from asyncapi_official import parse_with_official_parser, validate

REQUEST_REPLY = {
    "register_client": "client_registered",
    "register_worker": "worker_registered",
    "submit_job": "job_accepted",
    "request_job_status": "response_job_status",
    "cancel_job": "job_cancelled",
    "claim_job": "job_assigned",
    "complete_job": "job_completed_ack",
    "fail_job": "job_failed_ack",
    "worker_heartbeat": "worker_heartbeat_ack",
    "subscribe_job": "subscription_confirmed",
    "subscribe_job_notifications": "job_notifications_subscribed",
    "subscribe_stats": "subscription_confirmed",
    "request_stats": "stats_response",
    "ping": "pong",
    "chunked_message": "chunked_message_complete",
}


@pytest.fixture(scope="module")
def doc(repo):
    return yaml.safe_load((repo / "spec" / "asyncapi.yaml").read_text())


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    env = os.environ.get("ASYNCAPI_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("asyncapi")


needs_npm = pytest.mark.skipif(
    shutil.which("npm") is None and not os.environ.get("CI"), reason="npm not installed (required in CI)"
)


@needs_npm
def test_valid_against_official_asyncapi_3_schema(doc, cache_dir):
    validate(doc, cache_dir)


@needs_npm
def test_accepted_by_official_parser(repo, cache_dir):
    parse_with_official_parser(repo / "spec" / "asyncapi.yaml", cache_dir)


@needs_npm
def test_official_schema_check_can_fail(doc, cache_dir):
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["operations"]["receiveSubmitJob"]["action"] = "publish"
    with pytest.raises(Exception, match="action"):
        validate(broken, cache_dir)


def test_every_schema_message_is_on_the_channel_with_its_payload(doc, repo, schema_set):
    components = doc["components"]["messages"]
    assert set(components) == set(schema_set.messages)
    for kind, message in components.items():
        ref = message["payload"]["$ref"]
        assert ref == f"../schemas/messages/{kind}.json"
        assert (repo / "spec" / ref).resolve().is_file()
        assert doc["channels"]["hub"]["messages"][kind] == {"$ref": f"#/components/messages/{kind}"}


def test_every_message_has_an_operation(doc, schema_set):
    used = set()
    for op in doc["operations"].values():
        for m in op["messages"] + op.get("reply", {}).get("messages", []):
            used.add(m["$ref"].rsplit("/", 1)[1])
    assert used == set(schema_set.messages)


def test_request_reply_pairs(doc):
    by_message = {}
    for op in doc["operations"].values():
        if op["action"] == "receive":
            (msg,) = op["messages"]
            by_message[msg["$ref"].rsplit("/", 1)[1]] = op
    for request, reply in REQUEST_REPLY.items():
        op = by_message[request]
        replies = [m["$ref"].rsplit("/", 1)[1] for m in op["reply"]["messages"]]
        assert reply in replies, (request, replies)
        assert "error" in replies


def test_operations_are_tagged_with_roles(doc):
    roles = {"job_client", "worker", "monitor"}
    assert set(doc["components"]["tags"]) == roles
    for name, op in doc["operations"].items():
        tags = {t["$ref"].rsplit("/", 1)[1] for t in op["tags"]}
        assert tags and tags <= roles, name


def test_decisions_are_the_spec_description(doc, repo):
    readme = (repo / "spec" / "README.md").read_text()
    block = readme.split("<!-- asyncapi:start -->")[1].split("<!-- asyncapi:end -->")[0].strip()
    assert doc["info"]["description"].strip() == block
    for n in range(1, 23):
        assert f"**D{n} " in block
