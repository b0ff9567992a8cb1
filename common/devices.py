"""Device registry: bearer tokens stored only as salted hashes (DynamoDB table), and the device lifecycle.

A token reads ``vst1.<device id, base64url>.<secret>``: the device id part locates the registry
item, the 256-bit secret is checked against ``sha256(salt || secret)`` in constant time. The
secret is never stored; a lost token is replaced by :func:`rotate_device` (or by registering again).

Lifecycle (CONTRACT §1): :func:`register_device` (active, a new token), :func:`list_devices` (never a token
or hash), :func:`revoke_device` (the hash is removed and ``revoked_at`` set: no token of it authenticates
again; ``register_device`` makes it active again with a new token), :func:`rotate_device` (a new token for an
active device; the old one stops authenticating). Gateways cache answers for at most
``VITALSTREAM_TOKEN_CACHE_SECONDS`` (≤ 30 s), so a change takes effect on every gateway within that time.
Each change writes one audit line to the ``vitalstream.audit`` logger: action and device id, never a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

audit = logging.getLogger("vitalstream.audit")

TOKEN_PREFIX = "vst1"  # noqa: S105 - a format tag, not a secret


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    patient_id: str | None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A registry entry as ``devices list`` shows it (no token, no hash)."""

    device_id: str
    patient_id: str | None
    revoked: bool
    created_at: int  # epoch seconds

    def line(self) -> str:
        created = datetime.fromtimestamp(self.created_at, UTC).isoformat().replace("+00:00", "Z")
        state = "revoked" if self.revoked else "active"
        return f"{self.device_id}\t{self.patient_id or '-'}\t{state}\t{created}"


class UnknownDevice(LookupError):
    """No such device in the registry (or, for a rotation, not active)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_token(device_id: str) -> tuple[str, str, str]:
    """A fresh token for ``device_id``: (token, salt hex, hash hex)."""
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    token = f"{TOKEN_PREFIX}.{_b64(device_id.encode())}.{secret}"
    return token, salt.hex(), hash_secret(salt, secret)


def hash_secret(salt: bytes, secret: str) -> str:
    return hashlib.sha256(salt + secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(device id, secret) of a well-formed token, else None."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[2]:
        return None
    try:
        device_id = _unb64(parts[1]).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (device_id, parts[2]) if device_id else None


def verify(item: dict[str, Any], secret: str) -> bool:
    """Constant-time check of ``secret`` against a registry item's salted hash."""
    try:
        salt = bytes.fromhex(item["token_salt"]["S"])
        expected = item["token_hash"]["S"]
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(hash_secret(salt, secret), expected)


async def register_device(dynamodb: Any, table: str, device_id: str, patient_id: str | None) -> str:
    """Store a new salted token hash for ``device_id`` (replacing any old one); returns the token."""
    token, salt, digest = new_token(device_id)
    item: dict[str, Any] = {
        "device_id": {"S": device_id},
        "token_salt": {"S": salt},
        "token_hash": {"S": digest},
        "created_at": {"N": str(int(time.time()))},
    }
    if patient_id:
        item["patient_id"] = {"S": patient_id}
    await dynamodb.put_item(TableName=table, Item=item)
    audit.info("device registered", extra={"action": "register", "device_id": device_id})
    return token


async def list_devices(dynamodb: Any, table: str) -> list[DeviceRecord]:
    """Every registered device, by device id."""
    records = [record async for record in _scan(dynamodb, table)]
    return sorted(records, key=lambda record: record.device_id)


async def _scan(dynamodb: Any, table: str) -> AsyncIterator[DeviceRecord]:
    arguments: dict[str, Any] = {
        "TableName": table,
        "ProjectionExpression": "device_id, patient_id, created_at, revoked_at",
        "ConsistentRead": True,
    }
    while True:
        page = await dynamodb.scan(**arguments)
        for item in page.get("Items", []):
            yield DeviceRecord(
                device_id=item["device_id"]["S"],
                patient_id=item.get("patient_id", {}).get("S"),
                revoked="revoked_at" in item,
                created_at=int(item.get("created_at", {}).get("N", "0")),
            )
        if "LastEvaluatedKey" not in page:
            return
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def revoke_device(dynamodb: Any, table: str, device_id: str) -> bool:
    """Revoke ``device_id``: its token hash is removed and ``revoked_at`` set. False if it was already revoked;
    raises :class:`UnknownDevice` if it is not registered."""
    try:
        await dynamodb.update_item(
            TableName=table,
            Key={"device_id": {"S": device_id}},
            UpdateExpression="SET revoked_at = :now REMOVE token_hash, token_salt",
            ConditionExpression="attribute_exists(device_id) AND attribute_not_exists(revoked_at)",
            ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        item = (await dynamodb.get_item(TableName=table, Key={"device_id": {"S": device_id}}, ConsistentRead=True)).get(
            "Item"
        )
        if not item:
            raise UnknownDevice(device_id) from None
        return False
    audit.info("device revoked", extra={"action": "revoke", "device_id": device_id})
    return True


async def rotate_device(dynamodb: Any, table: str, device_id: str) -> str:
    """A new token for the active device ``device_id`` (the old one stops authenticating); raises
    :class:`UnknownDevice` if it is not registered or revoked (``devices add`` registers it again)."""
    token, salt, digest = new_token(device_id)
    try:
        await dynamodb.update_item(
            TableName=table,
            Key={"device_id": {"S": device_id}},
            UpdateExpression="SET token_salt = :salt, token_hash = :hash, rotated_at = :now",
            ConditionExpression="attribute_exists(device_id) AND attribute_not_exists(revoked_at)",
            ExpressionAttributeValues={
                ":salt": {"S": salt},
                ":hash": {"S": digest},
                ":now": {"N": str(int(time.time()))},
            },
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise UnknownDevice(device_id) from None
    audit.info("device token rotated", extra={"action": "rotate", "device_id": device_id})
    return token


async def authenticate(dynamodb: Any, table: str, token: str) -> Device | None:
    """The device a token belongs to, or None for a malformed, unknown or wrong token."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    device_id, secret = parsed
    response = await dynamodb.get_item(TableName=table, Key={"device_id": {"S": device_id}}, ConsistentRead=True)
    item = response.get("Item")
    if not item or "revoked_at" in item or not verify(item, secret):
        return None
    patient = item.get("patient_id", {}).get("S")
    return Device(device_id=device_id, patient_id=patient)
