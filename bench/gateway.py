"""Gateway throughput against a bare ASGI app, and readings/s through the full path into kinesalite.

``python -m bench.gateway`` prints::

    gateway_vs_bare_asgi: <requests/s of the gateway / requests/s of a bare ASGI app answering 202>
    gateway_readings_per_s_kinesalite: <readings/s accepted with the real Kinesis producer>

Both servers get the same 20-reading body from one load generator (``wrk``, one thread, fixed
connections), each as its own single-worker uvicorn process on 127.0.0.1, measured in alternating
rounds within one run. The gateway does everything it does in production (token check against the
device registry on moto with its cache, rate limiter, validation, normalisation, envelope encoding,
producer coalescing and acknowledgement, per-request JSON log line); only its producer writes to a
no-op sink. The per-device rate limit is raised so that the single benchmark device is never refused.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROUNDS = 3
SECONDS = 5
CONNECTIONS = 32
DEVICE = "bench-device-0001"
BENCH_RATE = "1000000:1000000"


# -- the two servers under test (uvicorn --factory targets) --------------------------------------


def gateway_null_sink_app() -> Any:
    """The gateway with a no-op producer sink, settings from the environment."""
    from common.logging import configure_logging
    from common.settings import GatewaySettings
    from service.app import create_app
    from service.producer import NullSink

    settings = GatewaySettings()
    configure_logging(settings.log_level)
    return create_app(settings, sink=NullSink())


def gateway_kinesis_app() -> Any:
    """The gateway as ``vitalstream gateway`` runs it."""
    from common.logging import configure_logging
    from common.settings import GatewaySettings
    from service.app import create_app

    settings = GatewaySettings()
    configure_logging(settings.log_level)
    return create_app(settings)


def bare_asgi_app() -> Any:
    """The baseline: reads the whole body and answers 202 with a small JSON document."""
    body = orjson.dumps({"request_id": "00000000-0000-0000-0000-000000000000", "accepted": 20, "rejected": []})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


# -- harness --------------------------------------------------------------------------------------


def request_body() -> bytes:
    """20 readings of one device, mixed metrics, units needing conversion, LOINC codes."""
    shapes = [
        ("heart_rate", 72, None),
        ("8867-4", 74, "bpm"),
        ("spo2", 97, "%"),
        ("body_temp", 98.6, "[degF]"),
        ("bp_systolic", 16, "kPa"),
        ("bp_diastolic", 80, "mm[Hg]"),
        ("glucose", 5.5, "mmol/L"),
        ("resp_rate", 16, "/min"),
        ("2339-0", 101, "mg/dL"),
        ("body_temp", 36.9, "Cel"),
    ]
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")  # within the maximum reading age
    readings = []
    for i in range(20):
        metric, value, unit = shapes[i % len(shapes)]
        reading: dict[str, Any] = {
            "device_id": DEVICE,
            "metric": metric,
            "value": value,
            "measured_at": f"{day}T10:{i:02d}:00.250Z",
        }
        if unit:
            reading["unit"] = unit
        if i % 2:
            reading["message_id"] = f"00000000-0000-4000-8000-{i:012d}"
        readings.append(reading)
    return orjson.dumps({"readings": readings})


def _wrk_script(directory: Path, body: bytes, token: str) -> Path:
    lua = directory / "post.lua"
    escaped = body.decode().replace("\\", "\\\\").replace('"', '\\"')
    lua.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{escaped}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    )
    return lua


def _wrk(url: str, script: Path, seconds: int) -> tuple[float, int]:
    """Requests/s and the count of non-2xx answers of one wrk run."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if rate is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(rate.group(1)), int(bad.group(1)) if bad else 0


def _serve(factory: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    from vitalstream.devstack.processes import free_port, http_ok, wait_until

    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", f"bench.gateway:{factory}", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    probe = "/readyz" if factory.startswith("gateway") else "/"
    wait_until(lambda: http_ok(url + probe), 60, factory, proc.pid, str(log))
    return proc, url


def _stop(proc: subprocess.Popen[bytes]) -> None:
    from vitalstream.devstack.processes import stop_pid

    stop_pid(proc.pid)


async def _prepare(env: dict[str, str]) -> str:
    """Create the stream and the device table; register the benchmark device; returns its token."""
    from common.devices import register_device
    from vitalstream.devstack.bootstrap import ensure_stream, ensure_table
    from vitalstream.devstack.clients import open_clients

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        async with AsyncExitStack() as stack:
            clients = await open_clients(stack, env["AWS_REGION"])
            await ensure_stream(clients.kinesis, env["VITALSTREAM_STREAM"])
            await ensure_table(clients.dynamodb, env["VITALSTREAM_DEVICE_TABLE"], "device_id")
            return await register_device(clients.dynamodb, env["VITALSTREAM_DEVICE_TABLE"], DEVICE, "bench-patient")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run() -> dict[str, float]:
    """Measure and print both figures; returns them."""
    from vitalstream.devstack.emulators import start_kinesalite, start_moto
    from vitalstream.devstack.processes import stop_pid
    from vitalstream.devstack.stack import DEFAULT_NAMES, stack_env

    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is required (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        directory = Path(tmp)
        kinesis, kinesis_url = start_kinesalite(directory)
        moto, moto_url = start_moto(directory)
        servers: list[subprocess.Popen[bytes]] = []
        try:
            env = {**os.environ, **stack_env(kinesis_url, moto_url, "postgresql://unused", "http://127.0.0.1:0",
                                             DEFAULT_NAMES)}  # fmt: skip
            env["VITALSTREAM_DEVICE_RATE"] = BENCH_RATE
            env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
            token = asyncio.run(_prepare(env))
            script = _wrk_script(directory, request_body(), token)

            gateway, gateway_url = _serve("gateway_null_sink_app", env, directory / "gateway.log")
            bare, bare_url = _serve("bare_asgi_app", env, directory / "bare.log")
            servers += [gateway, bare]
            _wrk(gateway_url + "/v1/vitals", script, 1)  # warm-up: token cache, imports, connections
            _wrk(bare_url + "/v1/vitals", script, 1)
            gateway_rates: list[float] = []
            bare_rates: list[float] = []
            for _ in range(ROUNDS):
                for url, rates in ((gateway_url, gateway_rates), (bare_url, bare_rates)):
                    rate, bad = _wrk(url + "/v1/vitals", script, SECONDS)
                    if bad:
                        raise RuntimeError(f"{bad} non-2xx answers from {url}: the measurement is void")
                    rates.append(rate)
            for proc in (gateway, bare):
                _stop(proc)

            full, full_url = _serve("gateway_kinesis_app", env, directory / "gateway-kinesis.log")
            servers.append(full)
            _wrk(full_url + "/v1/vitals", script, 1)
            rate, bad = _wrk(full_url + "/v1/vitals", script, SECONDS)
            if bad:
                raise RuntimeError(f"{bad} non-2xx answers from the gateway on kinesalite")
            _stop(full)
        finally:
            for proc in servers:
                stop_pid(proc.pid)
            stop_pid(kinesis.pid)
            stop_pid(moto.pid)
    gateway_rps = statistics.median(gateway_rates)
    bare_rps = statistics.median(bare_rates)
    results = {
        "gateway_vs_bare_asgi": gateway_rps / bare_rps,
        "gateway_requests_per_s_null_sink": gateway_rps,
        "bare_asgi_requests_per_s": bare_rps,
        "gateway_readings_per_s_kinesalite": rate * 20,
    }
    print(f"gateway_vs_bare_asgi: {results['gateway_vs_bare_asgi']:.3f}")
    print(f"gateway_readings_per_s_kinesalite: {results['gateway_readings_per_s_kinesalite']:.0f}")
    print(f"# gateway {gateway_rps:.0f} req/s, bare ASGI {bare_rps:.0f} req/s (median of {ROUNDS} alternating "
          f"{SECONDS}s rounds, wrk -t1 -c{CONNECTIONS}, 20 readings per request)")  # fmt: skip
    return results


if __name__ == "__main__":
    started = time.monotonic()
    run()
    print(f"# took {time.monotonic() - started:.0f}s")
