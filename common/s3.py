"""Small S3 helpers every lake writer shares: puts with optional SSE-KMS, gets, batched deletes."""

from __future__ import annotations

from typing import Any

__all__ = ["delete_objects", "get_object", "put_object"]


async def put_object(
    s3: Any, bucket: str, key: str, body: bytes, *, content_type: str, kms_key_id: str | None = None
) -> None:
    """Put ``body`` at ``key``; encrypted with SSE-KMS under ``kms_key_id`` when one is configured."""
    extra: dict[str, str] = {}
    if kms_key_id:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
    await s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, **extra)


async def get_object(s3: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or ``None`` if there is no such key."""
    try:
        response = await s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        return None
    async with response["Body"] as stream:
        data: bytes = await stream.read()
    return data


async def delete_objects(s3: Any, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        await s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
