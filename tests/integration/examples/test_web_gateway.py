"""examples/web_gateway.py, run for real and driven over HTTP with httpx."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[3]


def test_the_web_gateway_answers_http_requests_from_async_actors() -> None:
    proc = subprocess.Popen(
        [sys.executable, "examples/web_gateway.py", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        url = _serving_url(proc)
        with httpx.Client(base_url=url, timeout=30.0) as http:
            greeting = http.get("/greet/ada")
            assert greeting.status_code == 200
            assert greeting.json() == {"greeting": "hello, ada", "node": "gateway"}
            assert http.get("/divide", params={"a": 1, "b": 4}).json() == {"quotient": 0.25}
            failed = http.get("/divide", params={"a": 1, "b": 0})
            assert failed.status_code == 500
            assert failed.json()["error"].startswith("ZeroDivisionError: ")
            assert http.get("/divide", params={"a": "x"}).status_code == 400

        async def many() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
                return await asyncio.gather(*(http.get(f"/greet/n{i}") for i in range(60)))

        answers = asyncio.run(many())
        assert [a.json()["greeting"] for a in answers] == [f"hello, n{i}" for i in range(60)]

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "web_gateway: stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def _serving_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("web_gateway: serving at "):
            return line.split()[-1]
    raise AssertionError(f"the gateway exited: {proc.communicate(timeout=30)[1]}")
