"""Per-request bookkeeping of the hot path that must stay cheap: request ids and the one log line per request.

Contract:
- :class:`RequestIds` hands out random UUIDv4 strings (``str(uuid.uuid4())`` format, from ``os.urandom``),
  generated in blocks so that one id costs a ``next()``.
- :class:`RequestLog` logs one ``INFO`` message ``"request"`` on its logger with the given context, exactly as
  ``logger.info("request", extra=context)`` would: the logger's level, filters and handlers (as
  ``common.logging.configure_logging`` set them) decide whether and where. When every handler it reaches is a
  plain ``StreamHandler`` with ``common.logging.JsonFormatter`` (production), it renders the very line that
  formatter renders (same keys and values) without building a ``LogRecord``, and buffers it like an access log
  (nginx's ``buffer=``/``flush=``): inside a running event loop, lines are written together, under each
  handler's lock, once ``BUFFER_BYTES`` have gathered or ``FLUSH_SECONDS`` after the first of them, and by
  :meth:`RequestLog.flush` (the app's shutdown calls it); with no running loop a line is written at once. One
  write per many requests instead of one per request: a busy gateway spends its time on requests, and a line
  reaches the log at most ``FLUSH_SECONDS`` late. Otherwise it hands a ``LogRecord`` to ``Logger.handle`` at
  once, built from a template made once by ``Logger.makeRecord`` (no caller stack walk per request). Where
  lines go is looked up once a second: a change of handlers takes effect within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson

from common.logging import JsonFormatter

__all__ = ["BUFFER_BYTES", "FLUSH_SECONDS", "RequestIds", "RequestLog"]

BUFFER_BYTES = 64 * 1024
FLUSH_SECONDS = 0.25
_BLOCK = 512
_START_TIME: float = logging._startTime  # type: ignore[attr-defined]
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid4(x: str) -> str:
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def _random_ids() -> Iterator[str]:
    while True:
        block = os.urandom(16 * _BLOCK).hex()
        yield from map(
            _uuid4, map(block.__getitem__, map(slice, range(0, 32 * _BLOCK, 32), range(32, 32 * _BLOCK + 32, 32)))
        )


class RequestIds:
    """An endless supply of random request ids (UUIDv4 text)."""

    def __init__(self) -> None:
        self._ids = _random_ids()
        self.next = self._ids.__next__


class RequestLog:
    """Writes the per-request log line of ``logger`` (``INFO``, message ``"request"``)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._template: dict[str, Any] | None = None
        self._thread: int | None = None
        self._second = -1
        self._stamp = ""
        self._lines: list[str] = []
        self._size = 0
        self._handlers: list[logging.StreamHandler[Any]] | None = None
        self._name = orjson.dumps(logger.name).decode()
        self._timer: asyncio.TimerHandle | None = None

    def emit(self, context: dict[str, Any]) -> None:
        """Log ``"request"`` with ``context`` (allow-listed ``extra`` keys of ``common.logging``)."""
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        created = time.time()
        second = int(created)
        if second != self._second:  # once a second: the clock text, and where lines go
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            handlers = _json_stream_handlers(logger)
            if handlers != self._handlers:
                self.flush()
                self._handlers = handlers
        if self._handlers is None:
            logger.handle(self._record(created, context))
            return
        line = self._json_line(created, context)
        self._lines.append(line)
        self._size += len(line)
        if self._size >= BUFFER_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
            else:
                self._timer = loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Write the buffered lines now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines.clear()
        self._size = 0
        for handler in self._handlers or ():
            with handler.lock or contextlib.nullcontext():
                try:
                    handler.stream.write(text)
                    handler.flush()
                except RecursionError:
                    raise
                except Exception:
                    handler.handleError(self._record(time.time(), {}))

    def _json_line(self, created: float, context: dict[str, Any]) -> str:
        """What ``JsonFormatter`` renders for the record, plus the stream terminator."""
        msecs = int((created - self._second) * 1000)
        fields = orjson.dumps(context, default=str).decode()
        head = f'{{"ts":"{self._stamp}.{msecs:03d}Z","level":"INFO","logger":{self._name},"msg":"request"'
        return f"{head},{fields[1:]}\n" if len(fields) > 2 else f"{head}}}\n"

    def _record(self, created: float, context: dict[str, Any]) -> logging.LogRecord:
        """The ``LogRecord`` ``Logger.info("request", extra=context)`` would make, called from our caller."""
        template = self._template
        if template is None or self._thread != threading.get_ident():
            caller = sys._getframe(2)  # emit()'s caller, as Logger.findCaller would find it
            code = caller.f_code
            record = self._logger.makeRecord(
                self._logger.name, logging.INFO, code.co_filename, caller.f_lineno, "request", (), None, code.co_name
            )
            template = self._template = dict(record.__dict__)
            self._thread = threading.get_ident()
        record = logging.LogRecord.__new__(logging.LogRecord)
        attributes = record.__dict__
        attributes.update(template)
        attributes["created"] = created  # as LogRecord.__init__ computes them
        attributes["msecs"] = int((created - int(created)) * 1000) + 0.0
        attributes["relativeCreated"] = (created - _START_TIME) * 1000
        attributes.update(context)
        return record


def _json_stream_handlers(logger: logging.Logger) -> list[logging.StreamHandler[Any]] | None:
    """The handlers an INFO record of ``logger`` reaches, if all are plain ``JsonFormatter`` stream handlers.

    ``None`` when anything else is involved (logger or handler filters, other handler or formatter types,
    no handler at all): then the record goes through ``Logger.handle`` as usual.
    """
    if logger.filters or logger.disabled:
        return None
    handlers: list[logging.StreamHandler[Any]] = []
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if (
                type(handler) is not logging.StreamHandler
                or type(handler.formatter) is not JsonFormatter
                or handler.filters
                or handler.terminator != "\n"
            ):
                return None
            if handler.level <= logging.INFO:
                handlers.append(handler)
        current = current.parent if current.propagate else None
    return handlers or None
