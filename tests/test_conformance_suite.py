"""The conformance suite itself: coverage of the reference, ``--list``, the CLI's output and exit
codes, and the three reports with their "fix these first" (junit.xml parsed, report.html rendered
when Chromium is there)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from empq.conformance.ctx import Options
from empq.conformance.findings import Finding
from empq.conformance.model import Result, all_cases, select
from empq.conformance.report import RunInfo, summary_line, write_reports
from empq.conformance.runner import Runner, Settings
from empq.conformance.schemas import default_schemas
from reference_examples import examples_by_type
from test_conformance_broken import fake_hub, invalid_frames, silent

from empq.cli import main

SUMMARY = re.compile(r"^\d+ passed, \d+ failed, (\d+ blocked, )?\d+ skipped$")


def test_every_message_type_of_the_reference_is_exercised():
    declared = {m for c in all_cases() for m in c.messages}
    documented = set(examples_by_type())  # skipped with one line when the reference is absent
    assert len(documented) == 44
    assert documented <= declared, f"not exercised by any case: {sorted(documented - declared)}"
    assert declared <= set(default_schemas().messages), (
        f"unknown types: {sorted(declared - set(default_schemas().messages))}"
    )


def test_cases_are_well_formed():
    cases = all_cases()
    assert len({c.id for c in cases}) == len(cases)
    for c in cases:
        assert re.fullmatch(r"[A-Z]+(-[A-Z]+)*-\d{3}", c.id), c.id
        assert c.title and c.section and c.reference and c.messages, c.id
    tiers = {t: sum(1 for c in cases if c.tier.value == t) for t in ("MUST", "SHOULD", "INFO")}
    assert tiers["MUST"] >= 20 and tiers["SHOULD"] >= 40 and tiers["INFO"] >= 8


def test_select_by_glob():
    cases = all_cases()
    assert [c.id for c in select(cases, ["ping-00*"], None)] == ["PING-001", "PING-002", "PING-003"]
    picked = select(cases, ["JOB-*,WORK-*"], ["*-00[2-9]"])
    assert picked and all(c.id.endswith("-001") for c in picked)


def test_list_prints_every_case(capsys):
    assert main(["conformance", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    cases = all_cases()
    assert out[-1] == f"{len(cases)} cases"
    for c, line in zip(cases, out, strict=False):
        assert line.split()[:2] == [c.id, c.tier.value] and line.endswith(c.title)


async def _cli(*args: str) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",  # the installed package, not the checkout's source folders
        "-m",
        "empq.cli",
        "conformance",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines()


async def test_cli_against_empq_progress_summary_and_reports(hub, tmp_path):
    code, lines = await _cli(hub.url, "--cases", "PING-*,JOB-SUBMIT-001", "--report", str(tmp_path))
    assert code == 0, "\n".join(lines)
    assert SUMMARY.match(lines[-1]) and lines[-1] == "4 passed, 0 failed, 0 skipped"
    progress = [line for line in lines if line.startswith("PASS")]  # in the order the cases ended
    assert len(progress) == 4
    (submit,) = [line for line in progress if "JOB-SUBMIT-001" in line]
    assert re.match(r"^PASS +JOB-SUBMIT-001 +MUST +submit_job is accepted .* \(\d+ ms\)$", submit)
    assert "Fix these first: nothing (no case failed or was blocked; no frame violated its schema)" in lines
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["passed"] == 4 and report["url"] == hub.url and report["fix_first"] == []


async def test_cli_exit_code_follows_tiers():
    async with fake_hub(silent) as url:
        must, lines = await _cli(url, "--cases", "PING-001", "--timeout", "0.3")
        assert must == 1 and lines[-1] == "0 passed, 0 failed, 1 blocked, 0 skipped"  # a MUST not shown
        assert any(line.startswith("BLOCK") and "PING-001" in line for line in lines)
        assert "      blocked by: register_client is not answered" in lines
        assert any(
            line.startswith("  1. register_client is not answered — blocks 1, 1 MUST") for line in lines
        )
        should, lines = await _cli(url, "--cases", "PING-002", "--timeout", "0.3")
        assert should == 0 and lines[-1] == "0 passed, 1 failed, 0 skipped"  # a SHOULD failure is reported
        fatal, _ = await _cli(url, "--cases", "PING-002", "--timeout", "0.3", "--fail-on-should")
        assert fatal == 1  # ... and fatal with --fail-on-should
        info, lines = await _cli(url, "--cases", "CONN-EST-002", "--timeout", "0.3", "--fail-on-should")
        assert info == 0 and lines[-1] == "0 passed, 0 failed, 1 skipped"  # INFO: never a failure
        assert any(line.startswith("SKIP") and "CONN-EST-002" in line for line in lines)
    async with fake_hub(invalid_frames) as url:  # its pong's timestamp is a string
        lenient, lines = await _cli(url, "--cases", "PING-001")
        assert lenient == 0 and lines[-1] == "1 passed, 0 failed, 0 skipped"  # a finding, not a failure
        assert "  1. pong: timestamp is a string, not of type integer — 1 frame in 1 case(s)" in lines
        strict, lines = await _cli(url, "--cases", "PING-001", "--strict")
        assert strict == 1 and lines[-1] == "0 passed, 1 failed, 0 skipped"  # --strict: it ends the case
    usage, _ = await _cli("--cases", "PING-001")
    assert usage == 2
    bad_header, _ = await _cli("ws://127.0.0.1:1", "--header", "no-colon")
    assert bad_header == 2
    bad_url, _ = await _cli("ws://127.0.0.1:1", "--worker-url", "http://127.0.0.1:1/ws/worker/{id}")
    assert bad_url == 2


async def test_reports_junit_and_html(hub, tmp_path):
    cases = select(all_cases(), ["CONN-*", "PING-*", "DISC-003"], None)
    results = await Runner(Settings(Options(url=hub.url))).run(cases)
    async with fake_hub(silent) as url:
        runner = Runner(Settings(Options(url=url, timeout=0.3)))
        results += await runner.run(select(all_cases(), ["FLOW-001", "PING-002"], None))
    info = RunInfo(url=hub.url, started="2026-01-01T00:00:00Z", duration_s=1.5)
    findings = runner.findings.ordered()
    paths = write_reports(results, tmp_path, info, findings)

    data = json.loads(paths["json"].read_text())
    assert [c["id"] for c in data["cases"]] == [r.id for r in results]
    ping, flow = data["cases"][-2:]  # in the order of the reference: management, then flow
    assert flow["outcome"] == "blocked" and flow["expected"] and flow["wire"]  # it needed a client
    assert flow["cause"]["key"] == "unanswered:register_client"
    assert ping["outcome"] == "failed" and ping["cause"]["title"] == "ping is not answered"
    assert list(data)[:6] == ["suite", "url", "started", "duration_s", "options", "fix_first"]  # it opens so
    fix = {c["key"]: c for c in data["fix_first"]}
    assert fix["unanswered:register_client"]["blocked"] == ["FLOW-001"]
    assert fix["unanswered:ping"]["failed"] == ["PING-002"]
    assert fix["greeting:none"]["frames"] == 2  # no greeting on either connection: a finding
    assert data["findings"][0]["key"] == "greeting:none"

    root = ET.parse(paths["junit"]).getroot()
    assert root.tag == "testsuites" and root.get("tests") == str(len(results)) and root.get("failures") == "1"
    assert root.get("skipped") == "2"  # DISC-003 and the blocked FLOW-001
    first, *sections = root.findall("testsuite")
    assert first.get("name") == "fix these first" and first.get("tests") == "0"
    props = [p.get("value", "") for p in first.iter("property")]
    assert len(props) == 3 and all(" — " in p for p in props)
    assert (first.findtext("system-out") or "").startswith(
        "Fix these first (3 causes; 2 cases failed or blocked)"
    )
    suites = {s.get("name"): s for s in sections}
    assert set(suites) == {r.section for r in results}
    testcases = {tc.get("name", "").split()[0]: tc for s in sections for tc in s.findall("testcase")}
    assert testcases["PING-002"].find("failure") is not None
    blocked = testcases["FLOW-001"].find("skipped")
    assert blocked is not None and blocked.get("message") == "blocked by: register_client is not answered"
    skipped = [tc for tc in testcases.values() if tc.find("skipped") is not None]
    assert len(skipped) == 2

    page = paths["html"].read_text()
    assert summary_line(results) in page and 'id="summary"' in page and 'id="sections"' in page
    assert page.index('id="fix-first"') < page.index('id="summary"')  # it opens with what to fix
    assert 'id="cause-unanswered-register-client"' in page and 'href="#FLOW-001"' in page
    assert page.count('<details class="case') == len(results)
    assert "<link" not in page and "src=" not in page  # self-contained
    for r in results:
        assert f'id="{r.id}"' in page


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    return found


async def test_report_html_renders_in_headless_chromium(tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip(
            "no headless Chromium here (report.html is checked as text in test_reports_junit_and_html)"
        )
    results = [
        Result(
            "PING-001",
            "ping is answered with pong",
            "Connection Management › Connection Health",
            "MUST",
            "passed",
            3.0,
            wire={"client-1": [{"t_ms": 1.0, "dir": "sent", "frame": {"type": "ping"}}]},
        ),
        Result(
            "FLOW-001",
            "Complete Job Processing Flow",
            "Message Flow Examples › Complete Job Processing Flow",
            "MUST",
            "failed",
            3001.0,
            message="client-1: no job_update with {'progress': 25} within 3 s",
            expected="job_update with {'progress': 25}",
            received="nothing",
            cause={
                "key": "forwarded:job_client",
                "title": "the job client receives other peers' own frames instead of the hub's notifications",
                "hint": "It received update_job_progress where the reference has the hub send job_update.",
            },
            findings=["seconds"],
        ),
        Result(
            "JOB-STATUS-001",
            "request_job_status of a queued job answers response_job_status",
            "Job Management Messages › Job Status Query",
            "MUST",
            "blocked",
            2.0,
            message="blocked while connecting client-1: the hub refused the handshake with HTTP 403",
            cause={
                "key": "handshake:403:ws://hub:3002",
                "title": "handshake refused with HTTP 403 at ws://hub:3002",
            },
        ),
        Result(
            "DISC-003",
            "server_disconnect",
            "Connection Management › Graceful Disconnection",
            "MUST",
            "skipped",
            0.0,
            message="cannot be triggered from outside",
        ),
    ]
    seconds = Finding("seconds", "timestamps are in seconds, not Unix milliseconds", "multiply by 1000", 40)
    seconds.cases = {"FLOW-001", "PING-001"}
    paths = write_reports(
        results,
        tmp_path,
        RunInfo(url="ws://hub:3002", started="2026-01-01T00:00:00Z", duration_s=3),
        [seconds],
    )
    shot = tmp_path / "report.png"
    proc = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--screenshot={shot}",
        "--window-size=1200,1400",
        paths["html"].as_uri(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await asyncio.wait_for(proc.wait(), 60)
    assert shot.exists() and shot.stat().st_size > 10_000
    if os.environ.get("EMPQ_KEEP_SCREENSHOT"):  # to look at it: EMPQ_KEEP_SCREENSHOT=/tmp/report.png
        shutil.copy(shot, os.environ["EMPQ_KEEP_SCREENSHOT"])
