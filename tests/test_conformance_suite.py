"""The conformance suite itself: coverage of the reference, ``--list``, the CLI's output and exit
codes, and the three reports (junit.xml parsed, report.html rendered when Chromium is there)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from empq.conformance.ctx import Options
from empq.conformance.model import Result, all_cases, select
from empq.conformance.report import RunInfo, summary_line, write_reports
from empq.conformance.runner import Runner, Settings
from empq.conformance.schemas import default_schemas
from reference_examples import examples_by_type
from test_conformance_broken import fake_hub, silent

from empq.cli import main

SUMMARY = re.compile(r"^\d+ passed, \d+ failed, \d+ skipped$")


def test_every_message_type_of_the_reference_is_exercised():
    declared = {m for c in all_cases() for m in c.messages}
    documented = set(examples_by_type())
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
    progress = [line for line in lines if line.startswith("PASS")]
    assert len(progress) == 4
    assert re.match(r"^PASS +JOB-SUBMIT-001 +MUST +submit_job is accepted .* \(\d+ ms\)$", progress[0])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["passed"] == 4 and report["url"] == hub.url


async def test_cli_exit_code_follows_tiers():
    async with fake_hub(silent) as url:
        must, lines = await _cli(url, "--cases", "PING-001", "--timeout", "0.3")
        assert must == 1 and lines[-1] == "0 passed, 1 failed, 0 skipped"
        assert any(line.startswith("FAIL") and "PING-001" in line for line in lines)
        should, _ = await _cli(url, "--cases", "PING-002", "--timeout", "0.3")
        assert should == 0  # a SHOULD failure is reported, not fatal ...
        strict, _ = await _cli(url, "--cases", "PING-002", "--timeout", "0.3", "--strict")
        assert strict == 1  # ... unless --strict
    usage, _ = await _cli("--cases", "PING-001")
    assert usage == 2


async def test_reports_junit_and_html(hub, tmp_path):
    cases = select(all_cases(), ["CONN-*", "PING-*", "DISC-003"], None)
    results = await Runner(Settings(Options(url=hub.url))).run(cases)
    async with fake_hub(silent) as url:
        results += await Runner(Settings(Options(url=url, timeout=0.3))).run(
            select(all_cases(), ["FLOW-001"], None)
        )
    info = RunInfo(url=hub.url, started="2026-01-01T00:00:00Z", duration_s=1.5)
    paths = write_reports(results, tmp_path, info)

    data = json.loads(paths["json"].read_text())
    assert [c["id"] for c in data["cases"]] == [r.id for r in results]
    flow = data["cases"][-1]
    assert flow["outcome"] == "failed" and flow["expected"] and flow["wire"]

    root = ET.parse(paths["junit"]).getroot()
    assert root.tag == "testsuites" and root.get("tests") == str(len(results)) and root.get("failures") == "1"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {r.section for r in results}
    flow_case = suites[results[-1].section].find("testcase")
    assert flow_case is not None and flow_case.find("failure") is not None
    assert "FLOW-001" in flow_case.get("name", "")
    skipped = [tc for s in suites.values() for tc in s.findall("testcase") if tc.find("skipped") is not None]
    assert len(skipped) == 1

    page = paths["html"].read_text()
    assert summary_line(results) in page and 'id="summary"' in page and 'id="sections"' in page
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
            message="client-1: no job_update with {'status': 'assigned'} within 3 s",
            expected="job_update with {'status': 'assigned'}",
            received="nothing",
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
    paths = write_reports(
        results, tmp_path, RunInfo(url="ws://hub:3002", started="2026-01-01T00:00:00Z", duration_s=3)
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
