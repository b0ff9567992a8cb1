"""Device registry: bearer tokens stored only as salted hashes (DynamoDB table).

A token reads ``vst1.<device id, base64url>.<secret>``: the device id part locates the registry
item, the 256-bit secret is checked against ``sha256(salt || secret)`` in constant time. The
secret is never stored; a lost token is replaced by registering the device again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

TOKEN_PREFIX = "vst1"  # noqa: S105 - a format tag, not a secret


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    patient_id: str | None


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
    return token


async def authenticate(dynamodb: Any, table: str, token: str) -> Device | None:
    """The device a token belongs to, or None for a malformed, unknown or wrong token."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    device_id, secret = parsed
    response = await dynamodb.get_item(TableName=table, Key={"device_id": {"S": device_id}}, ConsistentRead=True)
    item = response.get("Item")
    if not item or not verify(item, secret):
        return None
    patient = item.get("patient_id", {}).get("S")
    return Device(device_id=device_id, patient_id=patient)
