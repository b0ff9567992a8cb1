"""The lake (S3) permissions of the deployment's IAM roles, read from ``deploy/aws/vitalstream.yaml`` (pure).

Used by the Redshift Data API stand-in (a ``COPY`` may read only what the COPY role's policy allows) and by the
tests that hold every key the code writes or COPYs against the role that does it.

- :func:`load_template`: the CloudFormation template, short-form intrinsics (``!Sub``, ``!GetAtt``, …) read as
  their long form (``{"Fn::Sub": …}``).
- :func:`lake_grants`: for one role (``GatewayRole``, ``WorkerRole``, ``RedshiftCopyRole``), the object-key
  patterns each S3 action is allowed on in the lake bucket (``${LakeBucket.Arn}/<pattern>``), from the role's
  inline policies and every ``AWS::IAM::Policy`` attached to it; ``s3:ListBucket`` maps to the allowed
  ``s3:prefix`` patterns (``*`` without a condition).
- :func:`allowed`: whether a key (or a listed prefix) matches one of the patterns (IAM wildcard matching:
  ``*`` any run of characters, ``?`` one). Only ``Allow`` statements exist in this template; a ``Deny`` is
  refused here so that a new one cannot be silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TEMPLATE", "allowed", "lake_grants", "load_template"]

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "aws" / "vitalstream.yaml"
_LAKE = "${LakeBucket.Arn}"


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML with CloudFormation's short-form tags."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@cache
def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return loaded


def _documents(template: Mapping[str, Any], role: str) -> list[Mapping[str, Any]]:
    resources = template["Resources"]
    docs = [p["PolicyDocument"] for p in resources[role]["Properties"].get("Policies", [])]
    for resource in resources.values():
        if resource.get("Type") != "AWS::IAM::Policy":
            continue
        roles = resource["Properties"].get("Roles", [])
        if {"Ref": role} in roles:
            docs.append(resource["Properties"]["PolicyDocument"])
    return docs


def _lake_patterns(resource: Any) -> list[str]:
    """Key patterns of the lake objects a ``Resource`` entry names (``""`` for the bucket itself)."""
    items = resource if isinstance(resource, list) else [resource]
    out = []
    for item in items:
        if item == {"Fn::GetAtt": ["LakeBucket", "Arn"]}:
            out.append("")
        elif isinstance(item, dict) and isinstance(item.get("Fn::Sub"), str) and item["Fn::Sub"].startswith(_LAKE):
            out.append(item["Fn::Sub"][len(_LAKE) :].removeprefix("/"))
    return out


def lake_grants(role: str, template: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """S3 action -> key patterns allowed for ``role`` in the lake bucket (see the module docstring)."""
    template = template if template is not None else load_template()
    grants: dict[str, list[str]] = {}
    for document in _documents(template, role):
        for statement in document["Statement"]:
            if not isinstance(statement, dict) or "Effect" not in statement:
                raise ValueError(f"{role}: a conditional policy statement is not understood here")
            if statement["Effect"] != "Allow":
                raise ValueError(f"{role}: Deny statements are not evaluated here")
            actions = statement["Action"]
            for action in [actions] if isinstance(actions, str) else actions:
                if not action.startswith("s3:"):
                    continue
                patterns = _lake_patterns(statement["Resource"])
                if action == "s3:ListBucket":
                    if "" not in patterns:
                        continue
                    condition = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
                    if condition is None:
                        patterns = ["*"]
                    else:
                        patterns = list(condition) if isinstance(condition, list) else [condition]
                else:
                    patterns = [p for p in patterns if p]
                grants.setdefault(action, []).extend(patterns)
    return grants


def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z")


def allowed(patterns: Iterable[str], key: str) -> bool:
    """Whether ``key`` matches one of the IAM wildcard ``patterns``."""
    return any(_regex(p).match(key) for p in patterns)
