"""Known-vulnerability audit of the dependencies: ``requirements.lock`` (pip-audit) and kinesalite's npm tree.

``python .ci/audit.py`` (``make audit``, part of ``make test``). Exit 1 when an advisory matches a pinned version.
Offline-tolerant, never silently green: when no advisory database can be reached (pip-audit's PyPI JSON API or
OSV; npm's bulk advisory endpoint), that half prints ``AUDIT SKIPPED: ...`` with the reason and does not fail.
pip-audit runs from its own virtual environment under ``build/audit/`` (installed by pin, not in the lock).
Accepted advisories are listed, with a reason, in ``IGNORED`` (none today).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "build" / "audit"
PIP_AUDIT = "pip-audit==2.10.1"
IGNORED: dict[str, str] = {}  # advisory id -> why it does not apply


def _pip_audit_binary() -> Path | None:
    binary = VENV / "bin" / "pip-audit"
    if binary.exists():
        return binary
    uv = ROOT / ".venv" / "bin" / "uv"
    try:
        subprocess.run([str(uv), "venv", "-q", str(VENV)], check=True, timeout=120)
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--python", str(VENV / "bin" / "python"), PIP_AUDIT],
            check=True,
            timeout=300,
        )
    except (subprocess.SubprocessError, OSError) as error:
        print(f"pip-audit: could not be installed ({type(error).__name__})", file=sys.stderr)
        return None
    return binary


def pip_audit() -> tuple[str, list[str]]:
    """('ok' | 'skipped: why', findings)."""
    binary = _pip_audit_binary()
    if binary is None:
        return "skipped: pip-audit could not be installed (no package index reachable)", []
    reasons = []
    for service in ("pypi", "osv"):
        command = [str(binary), "-r", str(ROOT / "requirements.lock"), "--no-deps", "--disable-pip",
                   "--progress-spinner", "off", "-f", "json", "-s", service]  # fmt: skip
        for advisory in IGNORED:
            command += ["--ignore-vuln", advisory]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            reasons.append(f"{service}: timed out")
            continue
        status, findings = read_pip_audit(service, done.stdout, done.stderr)
        if status.startswith("ok"):
            return status, findings
        reasons.append(status)
    return "skipped: no advisory database reachable (" + "; ".join(reasons) + ")", []


def read_pip_audit(service: str, stdout: str, stderr: str) -> tuple[str, list[str]]:
    """('ok: …', findings) from pip-audit's JSON report, or ('<service>: why nothing was audited', [])."""
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return f"{service}: {last[:200]}", []
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    if not audited:
        return f"{service}: none of {len(dependencies)} pins could be looked up", []
    findings = [
        f"{d['name']}=={d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions', [])) or 'no release'})"
        for d in audited
        for v in d.get("vulns", [])
        if v["id"] not in IGNORED
    ]
    skipped = len(dependencies) - len(audited)
    return f"ok: {len(audited)} pins audited against {service}" + (
        f", {skipped} not found" if skipped else ""
    ), findings


def npm_audit() -> tuple[str, list[str]]:
    try:
        done = subprocess.run(
            ["npm", "audit", "--json", "--omit=dev"], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
    except (subprocess.SubprocessError, OSError) as error:
        return f"skipped: npm audit could not run ({type(error).__name__})", []
    return read_npm_audit(done.stdout)


def read_npm_audit(stdout: str) -> tuple[str, list[str]]:
    """('ok: …' or 'skipped: …', findings) from ``npm audit --json``."""
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        return "skipped: npm audit gave no report", []
    if "error" in report or ("message" in report and "vulnerabilities" not in report):
        detail = report.get("message") or report.get("error", {}).get("summary") or "error"
        return f"skipped: no advisory database reachable ({str(detail)[:200]})", []
    vulnerabilities = report.get("vulnerabilities", {})
    findings = [
        f"{name}: {entry.get('severity')} ({entry.get('range', '')})"
        for name, entry in sorted(vulnerabilities.items())
        if not set(_ids(entry)) <= set(IGNORED) or not _ids(entry)
    ]
    total = report.get("metadata", {}).get("dependencies", {}).get("total", "?")
    return f"ok: {total} packages audited", findings


def _ids(entry: dict[str, object]) -> list[str]:
    via = entry.get("via", [])
    return [str(item.get("url", "")) for item in via if isinstance(item, dict)] if isinstance(via, list) else []


def main() -> int:
    failed = False
    for name, run in (("pip-audit requirements.lock", pip_audit), ("npm audit (kinesalite)", npm_audit)):
        status, findings = run()
        if status.startswith("skipped"):
            print(f"AUDIT SKIPPED: {name}: {status.removeprefix('skipped: ')}")
        else:
            print(f"audit: {name}: {status}, {len(findings)} known vulnerabilities")
        for finding in findings:
            print(f"  VULNERABLE {finding}")
        failed = failed or bool(findings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
