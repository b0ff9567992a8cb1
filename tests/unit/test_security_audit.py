"""The dependency audit (``.ci/audit.py``) reads pip-audit's and npm's reports: findings fail it, and an
unreachable advisory database is a skip that says so, never a silent pass."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

PATH = Path(__file__).resolve().parents[2] / ".ci" / "audit.py"


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_audit", PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pip_audit_findings_are_reported(audit: ModuleType) -> None:
    report = {
        "dependencies": [
            {"name": "orjson", "version": "3.13.0", "vulns": []},
            {"name": "jinja2", "version": "3.1.2", "vulns": [{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"]}]},
            {"name": "local-thing", "version": "1", "skip_reason": "not on PyPI"},
        ]
    }
    status, findings = audit.read_pip_audit("pypi", json.dumps(report), "")
    assert status == "ok: 2 pins audited against pypi, 1 not found"
    assert findings == ["jinja2==3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)"]


def test_nothing_audited_is_not_a_pass(audit: ModuleType) -> None:
    skipped = {"dependencies": [{"name": "orjson", "version": "3.13.0", "skip_reason": "404"}]}
    status, findings = audit.read_pip_audit("pypi", json.dumps(skipped), "")
    assert not status.startswith("ok")
    assert findings == []
    status, _ = audit.read_pip_audit("osv", "", "ConnectionError: api.osv.dev")
    assert status == "osv: ConnectionError: api.osv.dev"


def test_npm_audit(audit: ModuleType) -> None:
    found = {
        "vulnerabilities": {"minimist": {"severity": "critical", "range": "<1.2.6", "via": [{"url": "https://x/1"}]}},
        "metadata": {"dependencies": {"total": 44}},
    }
    assert audit.read_npm_audit(json.dumps(found)) == ("ok: 44 packages audited", ["minimist: critical (<1.2.6)"])
    clean = {"vulnerabilities": {}, "metadata": {"dependencies": {"total": 44}}}
    assert audit.read_npm_audit(json.dumps(clean)) == ("ok: 44 packages audited", [])
    unreachable = {"message": "405 Method Not Allowed - POST https://registry/-/npm/v1/security/advisories/bulk"}
    status, findings = audit.read_npm_audit(json.dumps(unreachable))
    assert status.startswith("skipped: no advisory database reachable (405")
    assert findings == []


def test_main_prints_skips_loudly_and_fails_on_findings(
    audit: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(audit, "pip_audit", lambda: ("skipped: no advisory database reachable (offline)", []))
    monkeypatch.setattr(audit, "npm_audit", lambda: ("ok: 44 packages audited", ["minimist: critical (<1.2.6)"]))
    assert audit.main() == 1
    out = capsys.readouterr().out
    assert "AUDIT SKIPPED: pip-audit requirements.lock: no advisory database reachable (offline)" in out
    assert "VULNERABLE minimist" in out
    monkeypatch.setattr(audit, "npm_audit", lambda: ("ok: 44 packages audited", []))
    assert audit.main() == 0
