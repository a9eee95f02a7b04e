"""Reports of a run: ``report.json`` (everything), ``junit.xml`` (for CI), ``report.html`` (for people)
and the console's closing text.

Each opens with "fix these first": the failed and blocked cases grouped by their first cause
(a refused handshake, a greeting of another type, a message type not answered, the same schema
violation, the same close code, ...), each with the cases it fails and blocks and a hint, biggest
first, then what the received frames got wrong that failed no case (deduplicated findings).

The HTML page is self-contained (inline CSS and a few lines of JS, no external assets): that list,
summary counts, a table by section, and every case as an expandable block with its message,
cause, expected vs received, notes, the reference text it checks and its wire log per peer.
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empq.conformance.findings import Finding
from empq.conformance.model import Outcome, Result

OUTCOMES = [o.value for o in Outcome]
TIERS = ("MUST", "SHOULD", "INFO")


@dataclass
class RunInfo:
    url: str
    started: str  # ISO 8601
    duration_s: float
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RootCause:
    """One cause and what it did: the cases it failed and blocked, the frames it was seen in."""

    key: str
    title: str
    hint: str = ""
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    must: int = 0  # MUST cases among them
    frames: int = 0  # received frames that showed it (schema findings)
    seen_in: list[str] = field(default_factory=list)  # cases whose frames showed it

    @property
    def hits(self) -> int:
        return len(self.failed) + len(self.blocked)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "hint": self.hint,
            "failed": self.failed,
            "blocked": self.blocked,
            "must": self.must,
            "frames": self.frames,
            "seen_in": self.seen_in,
        }

    def counts(self) -> str:
        parts = []
        if self.failed:
            parts.append(f"fails {len(self.failed)}")
        if self.blocked:
            parts.append(f"blocks {len(self.blocked)}")
        if self.must:
            parts.append(f"{self.must} MUST")
        if self.frames:
            parts.append(
                f"{self.frames} frame{'s' if self.frames != 1 else ''} in {len(self.seen_in)} case(s)"
            )
        return ", ".join(parts)


def root_causes(results: list[Result], findings: list[Finding] | None = None) -> list[RootCause]:
    """Failed, blocked and broken cases grouped by cause (with the findings of the same key), the
    causes that hit most cases first; then the findings that failed no case, most frames first."""
    groups: dict[str, RootCause] = {}
    for r in results:
        if r.outcome not in (Outcome.FAILED.value, Outcome.BLOCKED.value, Outcome.ERROR.value):
            continue
        cause = r.cause or {"key": f"case:{r.id}", "title": r.message, "hint": ""}
        group = groups.setdefault(
            cause["key"], RootCause(cause["key"], cause["title"], cause.get("hint", ""))
        )
        (group.blocked if r.outcome == Outcome.BLOCKED.value else group.failed).append(r.id)
        group.must += r.tier == "MUST"
    for f in findings or ():
        group = groups.setdefault(f.key, RootCause(f.key, f.title, f.hint))
        group.frames, group.seen_in = f.frames, sorted(f.cases)
    return sorted(groups.values(), key=lambda g: (-g.hits, -g.must, -g.frames, g.key))


def fix_first_text(causes: list[RootCause], limit: int = 20, ids: int = 10) -> str:
    """The console's "fix these first" block."""
    if not causes:
        return "Fix these first: nothing (no case failed or was blocked; no frame violated its schema)"
    hit = sum(c.hits for c in causes)
    lines = [f"Fix these first ({len(causes)} causes; {hit} cases failed or blocked):"]
    for n, c in enumerate(causes[:limit], 1):
        lines.append(f"{n:>3}. {c.title} — {c.counts()}")
        if c.hint:
            lines.append(f"       hint: {c.hint}")
        for label, items in (("fails", c.failed), ("blocks", c.blocked)):
            if items:
                more = f" … and {len(items) - ids} more" if len(items) > ids else ""
                lines.append(f"       {label}: {', '.join(items[:ids])}{more}")
    if len(causes) > limit:
        lines.append(f"  … {len(causes) - limit} more causes in report.json")
    return "\n".join(lines)


def summary_counts(results: list[Result]) -> dict[str, Any]:
    total = {o: 0 for o in OUTCOMES}
    by_tier = {t: {o: 0 for o in OUTCOMES} for t in TIERS}
    for r in results:
        total[r.outcome] += 1
        by_tier.setdefault(r.tier, {o: 0 for o in OUTCOMES})[r.outcome] += 1
    return {"total": len(results), **total, "by_tier": by_tier}


def by_section(results: list[Result]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        out[r.section].append(r)
    return dict(out)


def summary_line(results: list[Result]) -> str:
    """``N passed, N failed, N skipped`` (errors count as failed; ``N blocked`` before skipped when
    any case was blocked).  INFO cases are never failed: the runner records or skips them."""
    c = summary_counts(results)
    blocked = f"{c['blocked']} blocked, " if c["blocked"] else ""
    return f"{c['passed']} passed, {c['failed'] + c['error']} failed, {blocked}{c['skipped']} skipped"


def write_reports(
    results: list[Result], directory: Path, info: RunInfo, findings: list[Finding] | None = None
) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "report.json",
        "junit": directory / "junit.xml",
        "html": directory / "report.html",
    }
    paths["json"].write_text(to_json(results, info, findings), encoding="utf-8")
    paths["junit"].write_bytes(to_junit(results, info, findings))
    paths["html"].write_text(to_html(results, info, findings), encoding="utf-8")
    return paths


# report.json -------------------------------------------------------------------------------
def to_json(results: list[Result], info: RunInfo, findings: list[Finding] | None = None) -> str:
    document = {
        "suite": "empq conformance",
        "url": info.url,
        "started": info.started,
        "duration_s": round(info.duration_s, 3),
        "options": info.options,
        "fix_first": [c.to_dict() for c in root_causes(results, findings)],
        "summary": summary_counts(results),
        "summary_line": summary_line(results),
        "findings": [f.to_dict() for f in findings or ()],
        "cases": [r.to_dict() for r in results],
    }
    return json.dumps(document, indent=2, default=str, ensure_ascii=False) + "\n"


# junit.xml ---------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def _details(r: Result, wire_frames: int = 40) -> str:
    parts = [r.message]
    if r.cause:
        parts.append(
            "cause: " + r.cause["title"] + (f" (hint: {r.cause['hint']})" if r.cause.get("hint") else "")
        )
    if r.expected is not None:
        parts.append("expected: " + _text(r.expected))
    if r.received is not None:
        parts.append("received: " + _text(r.received))
    for peer, entries in r.wire.items():
        parts.append(f"wire {peer}:")
        for e in entries[:wire_frames]:
            frame = e["frame"] if isinstance(e["frame"], str) else json.dumps(e["frame"], default=str)
            parts.append(f"  {e['t_ms']} ms {e['dir']}: {frame[:300]}")
        if len(entries) > wire_frames:
            parts.append(f"  ... {len(entries) - wire_frames} more")
    return "\n".join(parts)


def to_junit(results: list[Result], info: RunInfo, findings: list[Finding] | None = None) -> bytes:
    """A testsuite per section (blocked cases are skipped with their cause), after a first, empty
    testsuite "fix these first" whose properties and system-out list the root causes."""
    c = summary_counts(results)
    root = ET.Element(
        "testsuites",
        name="empq conformance",
        tests=str(c["total"]),
        failures=str(c["failed"]),
        errors=str(c["error"]),
        skipped=str(c["skipped"] + c["blocked"]),
        time=f"{info.duration_s:.3f}",
    )
    causes = root_causes(results, findings)
    first = ET.SubElement(
        root, "testsuite", name="fix these first", tests="0", failures="0", errors="0", skipped="0", time="0"
    )
    props = ET.SubElement(first, "properties")
    for n, cause in enumerate(causes, 1):
        ET.SubElement(props, "property", name=f"cause {n}", value=f"{cause.title} — {cause.counts()}")
    ET.SubElement(first, "system-out").text = fix_first_text(causes, limit=len(causes), ids=len(results))
    for section, items in by_section(results).items():
        sc = summary_counts(items)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=section,
            tests=str(sc["total"]),
            failures=str(sc["failed"]),
            errors=str(sc["error"]),
            skipped=str(sc["skipped"] + sc["blocked"]),
            time=f"{sum(r.duration_ms for r in items) / 1000:.3f}",
        )
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="url", value=info.url)
        for r in items:
            case = ET.SubElement(
                suite,
                "testcase",
                classname="conformance." + section.replace(" › ", ".").replace(" ", "_"),
                name=f"{r.id} [{r.tier}] {r.title}",
                time=f"{r.duration_ms / 1000:.3f}",
            )
            if r.outcome == Outcome.FAILED.value:
                ET.SubElement(case, "failure", message=r.message, type=r.tier).text = _details(r)
            elif r.outcome == Outcome.ERROR.value:
                ET.SubElement(case, "error", message=r.message, type="SuiteError").text = _details(r)
            elif r.outcome == Outcome.BLOCKED.value:
                title = (r.cause or {}).get("title", r.message)
                ET.SubElement(case, "skipped", message=f"blocked by: {title}").text = _details(r)
            elif r.outcome == Outcome.SKIPPED.value:
                ET.SubElement(case, "skipped", message=r.message)
            if r.notes:
                ET.SubElement(case, "system-out").text = "\n".join(r.notes)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# report.html -------------------------------------------------------------------------------
CSS = """
:root { --pass:#1a7f37; --fail:#cf222e; --skip:#9a6700; --err:#8250df; --block:#bc4c00; --line:#d0d7de;
        --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 24px; color: #1f2328; }
h1 { margin: 0 0 4px; font-size: 24px; } h2 { margin-top: 32px; border-bottom: 1px solid var(--line); }
.meta { color: #59636e; margin: 0 0 16px; }
.tiles { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 120px; }
.tile b { display: block; font-size: 26px; }
.tile.passed b { color: var(--pass); } .tile.failed b { color: var(--fail); }
.tile.skipped b { color: var(--skip); } .tile.error b { color: var(--err); }
.tile.blocked b { color: var(--block); }
ol.causes { padding-left: 24px; } ol.causes li { margin: 8px 0; } .causes .counts { color: #59636e; }
.causes .hint { margin: 2px 0; color: #0550ae; }
.causes a { font-family: ui-monospace, monospace; font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); } td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.bad { color: var(--fail); font-weight: 600; }
details.case { border: 1px solid var(--line); border-left-width: 5px; border-radius: 6px; margin: 6px 0; }
details.case > summary { cursor: pointer; padding: 6px 10px; list-style: none; }
details.case > summary::-webkit-details-marker { display: none; }
details.passed { border-left-color: var(--pass); } details.failed { border-left-color: var(--fail); }
details.skipped { border-left-color: var(--skip); } details.error { border-left-color: var(--err); }
details.blocked { border-left-color: var(--block); } .blocked .badge { color: var(--block); }
.badge { display: inline-block; width: 44px; font-weight: 700; font-size: 12px; }
.passed .badge { color: var(--pass); } .failed .badge { color: var(--fail); }
.skipped .badge { color: var(--skip); } .error .badge { color: var(--err); }
.tier { font-size: 11px; border: 1px solid var(--line); border-radius: 10px; padding: 0 6px; margin: 0 6px; }
.dur { color: #59636e; float: right; }
.body { padding: 4px 14px 12px; border-top: 1px solid var(--line); }
.msg { font-weight: 600; white-space: pre-wrap; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
pre { background: var(--soft); padding: 8px; border-radius: 6px; overflow-x: auto; white-space: pre-wrap;
      word-break: break-word; margin: 4px 0; font-size: 12px; }
.wire td { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; } .wire .sent { color: #0550ae; }
.wire .received { color: #116329; } .wire .connect { color: #59636e; } .controls button { margin-right: 6px; }
body.only-problems details.passed, body.only-problems details.skipped { display: none; }
body.only-problems details.blocked { display: none; }
h4 { margin: 10px 0 2px; }
"""

JS = """
function show(mode) {
  document.body.classList.toggle('only-problems', mode === 'problems');
}
function expand(open) {
  document.querySelectorAll('details.case').forEach(d => { d.open = open; });
}
"""

LABEL = {"passed": "PASS", "failed": "FAIL", "blocked": "BLOCK", "skipped": "SKIP", "error": "ERROR"}


def _e(value: Any) -> str:
    return html.escape(_text(value))


def _anchor(section: str) -> str:
    return "sec-" + "".join(ch if ch.isalnum() else "-" for ch in section.lower())


def _frame_text(frame: Any) -> str:
    return frame if isinstance(frame, str) else json.dumps(frame, default=str)


def _bad(outcome: str, n: int) -> str:
    return " bad" if outcome in ("failed", "error") and n else ""


def _case_html(r: Result, titles: dict[str, str]) -> str:
    is_open = " open" if r.outcome in ("failed", "error") else ""
    parts = [
        f'<details class="case {r.outcome}" id="{_e(r.id)}"{is_open}>',
        f'<summary><span class="badge">{LABEL.get(r.outcome, r.outcome)}</span><code>{_e(r.id)}</code>'
        f'<span class="tier">{_e(r.tier)}</span>{_e(r.title)}'
        f'<span class="dur">{r.duration_ms:.0f} ms</span></summary>',
        '<div class="body">',
    ]
    if r.message:
        parts.append(f'<p class="msg">{_e(r.message)}</p>')
    if r.cause:
        hint = f" — {_e(r.cause['hint'])}" if r.cause.get("hint") else ""
        parts.append(
            f'<p>Cause: <a href="#cause-{_e(_slug(r.cause["key"]))}">{_e(r.cause["title"])}</a>{hint}</p>'
        )
    if r.findings:
        parts.append(
            "<p>Findings in its frames: "
            + "; ".join(f'<a href="#cause-{_e(_slug(k))}">{_e(titles.get(k, k))}</a>' for k in r.findings)
            + "</p>"
        )
    if r.expected is not None or r.received is not None:
        parts.append(
            f'<div class="grid"><div><h4>Expected</h4><pre>{_e(r.expected)}</pre></div>'
            f"<div><h4>Received</h4><pre>{_e(r.received)}</pre></div></div>"
        )
    if r.notes:
        parts.append("<h4>Notes</h4><ul>" + "".join(f"<li>{_e(n)}</li>" for n in r.notes) + "</ul>")
    parts.append(f"<h4>Reference</h4><pre>{_e(r.reference)}</pre>")
    parts.append("<h4>Messages</h4><p>" + ", ".join(f"<code>{_e(m)}</code>" for m in r.messages) + "</p>")
    if r.wire:
        parts.append("<h4>Wire log</h4>")
        for peer, entries in r.wire.items():
            rows = "".join(
                f'<tr class="{_e(e["dir"])}"><td class="n">{_e(e["t_ms"])}</td><td>{_e(e["dir"])}</td>'
                f"<td>{_e(_frame_text(e['frame']))}</td></tr>"
                for e in entries
            )
            parts.append(
                f'<details><summary>{_e(peer)} ({len(entries)} frames)</summary><table class="wire">'
                f"<tr><th>ms</th><th>dir</th><th>frame</th></tr>{rows}</table></details>"
            )
    parts.append("</div></details>")
    return "\n".join(parts)


def _slug(key: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in key.lower())[:120]


def _causes_html(causes: list[RootCause]) -> str:
    if not causes:
        return "<p>Nothing: no case failed or was blocked, and no frame violated its schema.</p>"
    items = []
    for cause in causes:
        links = []
        for label, ids in (("fails", cause.failed), ("blocks", cause.blocked)):
            if ids:
                links.append(f"{label}: " + " ".join(f'<a href="#{_e(i)}">{_e(i)}</a>' for i in ids))
        hint = f'<p class="hint">{_e(cause.hint)}</p>' if cause.hint else ""
        items.append(
            f'<li id="cause-{_e(_slug(cause.key))}"><b>{_e(cause.title)}</b> '
            f'<span class="counts">— {_e(cause.counts())}</span>{hint}'
            + "".join(f"<div>{link}</div>" for link in links)
            + "</li>"
        )
    return f'<ol class="causes" id="fix-first">{"".join(items)}</ol>'


def to_html(results: list[Result], info: RunInfo, findings: list[Finding] | None = None) -> str:
    c = summary_counts(results)
    sections = by_section(results)
    titles = {f.key: f.title for f in findings or ()}
    tiles = "".join(
        f'<div class="tile {o}"><b>{c[o]}</b>{o}</div>'
        for o in ("passed", "failed", "blocked", "skipped", "error")
    )
    tier_rows = "".join(
        f"<tr><td>{t}</td>"
        + "".join(f'<td class="n{_bad(o, c["by_tier"][t][o])}">{c["by_tier"][t][o]}</td>' for o in OUTCOMES)
        + "</tr>"
        for t in TIERS
    )
    section_rows = []
    for section, items in sections.items():
        sc = summary_counts(items)
        cells = "".join(f'<td class="n{_bad(o, sc[o])}">{sc[o]}</td>' for o in OUTCOMES)
        section_rows.append(
            f'<tr><td><a href="#{_anchor(section)}">{_e(section)}</a></td>'
            f'<td class="n">{sc["total"]}</td>{cells}</tr>'
        )
    head = "".join(f"<th>{o}</th>" for o in OUTCOMES)
    body = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>empq conformance: {_e(info.url)}</title>",
        f"<style>{CSS}</style><script>{JS}</script></head><body>",
        "<h1>empq conformance report</h1>",
        f'<p class="meta">Hub <code>{_e(info.url)}</code> · started {_e(info.started)} · '
        f"{info.duration_s:.1f} s · {c['total']} cases</p>",
        f'<p class="summary-line"><b>{_e(summary_line(results))}</b></p>',
        "<h2>Fix these first</h2>",
        _causes_html(root_causes(results, findings)),
        f'<div class="tiles" id="summary">{tiles}</div>',
        f"<table><tr><th>tier</th>{head}</tr>{tier_rows}</table>",
        "<p>MUST: behaviour the reference documents · SHOULD: what it implies but does not state · "
        "INFO: behaviour it leaves open (recorded, not judged). Blocked: a precondition of the case "
        "(connecting, registering, a job accepted) failed first, for the cause named.</p>",
        "<h2>By section</h2>",
        f'<table id="sections"><tr><th>section</th><th>cases</th>{head}</tr>{"".join(section_rows)}</table>',
        '<p class="controls"><button onclick="show(\'all\')">all cases</button>'
        "<button onclick=\"show('problems')\">failures only</button>"
        '<button onclick="expand(true)">expand all</button>'
        '<button onclick="expand(false)">collapse all</button></p>',
    ]
    for section, items in sections.items():
        body.append(f'<h2 id="{_anchor(section)}">{_e(section)}</h2>')
        body.extend(_case_html(r, titles) for r in items)
    body.append("</body></html>")
    return "\n".join(body) + "\n"
