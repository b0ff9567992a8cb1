"""Validate the JSON (and rule YAML) artefacts of deploy/ offline; run by deploy/check.sh.

Usage: ``python deploy/schemas/validate.py [DEPLOY_DIR]`` (default: the deploy/ folder holding this script).

* ``ecs/taskdef-*.json``: botocore's ECS model for ``RegisterTaskDefinition`` (the exact shape
  ``aws ecs register-task-definition --cli-input-json`` takes: unknown or mistyped keys fail), then
  ``schemas/ecs-task-definition.schema.json`` (project policy: Fargate, awslogs, non-root, read-only root, ...).
* ``ecs/service-*.json``: botocore's ``CreateService`` shape, then ``schemas/ecs-service.schema.json``.
* ``observability/*.json``: ``schemas/grafana-dashboard.schema.json``.
* ``observability/alerts.yaml``: ``schemas/prometheus-rules.schema.json``.

Exit status 0 when everything is valid, 1 otherwise (every problem is printed).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from botocore.session import get_session
from botocore.validate import ParamValidator
from jsonschema import Draft202012Validator


def _schema(deploy: Path, name: str) -> Draft202012Validator:
    schema = json.loads((deploy / "schemas" / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _schema_errors(validator: Draft202012Validator, document: Any) -> Iterator[str]:
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        yield f"{where}: {error.message}"


def _api_errors(operation: str, document: Any) -> Iterator[str]:
    shape = get_session().get_service_model("ecs").operation_model(operation).input_shape
    report = ParamValidator().validate(document, shape)
    if report.has_errors():
        yield from report.generate_report().splitlines()


def _load(path: Path) -> Any:
    text = path.read_text()
    return yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)


def validate(deploy: Path) -> list[str]:
    """Every problem found under ``deploy``, as ``path: message`` lines."""
    checks: list[tuple[str, str, str | None, int]] = [
        # (glob, schema, botocore ECS operation, minimum number of files)
        ("ecs/taskdef-*.json", "ecs-task-definition.schema.json", "RegisterTaskDefinition", 4),
        ("ecs/service-*.json", "ecs-service.schema.json", "CreateService", 4),
        ("observability/*.json", "grafana-dashboard.schema.json", None, 1),
        ("observability/alerts.yaml", "prometheus-rules.schema.json", None, 1),
    ]
    problems: list[str] = []
    for pattern, schema_name, operation, minimum in checks:
        validator = _schema(deploy, schema_name)
        files = sorted(deploy.glob(pattern))
        if len(files) < minimum:
            problems.append(f"{deploy / pattern}: expected at least {minimum} file(s), found {len(files)}")
        for path in files:
            try:
                document = _load(path)
            except (ValueError, yaml.YAMLError) as exc:
                problems.append(f"{path}: not parseable: {exc}")
                continue
            if operation is not None:
                problems.extend(f"{path}: {operation}: {line.strip()}" for line in _api_errors(operation, document))
            problems.extend(f"{path}: {line}" for line in _schema_errors(validator, document))
    return problems


def main(argv: list[str]) -> int:
    deploy = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    problems = validate(deploy)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in the JSON artefacts of {deploy}", file=sys.stderr)
        return 1
    print(f"JSON artefacts of {deploy}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
