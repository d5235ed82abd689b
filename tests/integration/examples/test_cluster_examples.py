"""Every example is a program a newcomer runs first: run each one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_pingpong_rallies_between_two_node_processes() -> None:
    done = run("examples/pingpong.py", "--rallies", "200")
    assert done.returncode == 0, done.stderr
    assert "200 rallies across two nodes" in done.stdout
    assert "both nodes stopped" in done.stdout


def test_only_the_gpu_node_gets_gpu_work() -> None:
    done = run("examples/gpu_routing.py")
    assert done.returncode == 0, done.stderr
    assert "gpu jobs per node: {'edge-gpu': 10}" in done.stdout
    assert "cpu jobs per node: {'edge-1': 3, 'edge-2': 3, 'edge-gpu': 3}" in done.stdout


def test_the_edge_cluster_survives_losing_an_etcd_member() -> None:
    done = run("examples/edge/edge_cluster.py")
    assert done.returncode == 0, done.stderr
    assert "members: ['board-0', 'board-1', 'board-2']" in done.stdout
    assert "sensor readings came from: ['board-0', 'board-1', 'board-2']" in done.stdout
    for i in range(3):
        assert f"sensor-board-{i} -> {{'board': 'board-{i}'" in done.stdout
    assert "cluster stopped" in done.stdout


def test_the_image_pipeline_runs_a_rate_limited_chord_and_fires_its_schedules() -> None:
    done = run("examples/image_pipeline.py")
    assert done.returncode == 0, done.stderr
    assert "contact sheet: 10 thumbnails, 10045 px wide" in done.stdout
    assert "thumbnail sweep: fired by the leader" in done.stdout
    rows = {
        line.split()[0]: line
        for line in done.stdout.splitlines()
        if line.startswith(("nightly", "thumbnail-"))
    }
    assert "cron 0 2 * * *" in rows["nightly-report"] and "T02:00:00.000Z" in rows["nightly-report"]
    assert "every 2s" in rows["thumbnail-sweep"] and "delivered" in rows["thumbnail-sweep"]
    limits = [line.split() for line in done.stdout.splitlines() if line.startswith("image.")]
    assert limits and limits[0][:2] == ["image.resize", "100/s"], done.stdout
    paced = re.search(r"150 more resizes took ([\d.]+) s", done.stdout)
    assert paced is not None and float(paced.group(1)) >= 1.35, "140 tokens at 100/s"
    assert "both nodes stopped" in done.stdout
