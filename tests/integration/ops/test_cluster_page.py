"""The live cluster page in a real headless Chromium, over two real nodes.

Also checks, on the same cluster, the ``/api/cluster`` JSON contract, the
``taskmesh dead-letters`` command and the series ``/metrics`` has from the
first scrape. The screenshot lands in ``test-artifacts/cluster-page.png``.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

import taskmesh
from taskmesh.ops.metrics import DEAD_LETTER_REASONS
from tests.integration.node.support import ROOT, cli, running_node
from tests.waiting import wait_until

ARTIFACTS = ROOT / "test-artifacts"


def find_program(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(
        f"none of {names} is installed: the browser test needs Debian's chromium and "
        "chromium-driver (`apt-get install chromium chromium-driver`; .ci/run does it)"
    )


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = find_program("chromium", "chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--disable-gpu"):  # fmt: skip
        options.add_argument(argument)
    service = Service(executable_path=find_program("chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json"
        return json.loads(response.read())  # type: ignore[no-any-return]


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()  # type: ignore[no-any-return]


def shown(driver: webdriver.Chrome, css: str) -> str:
    """The text of the first element matching ``css``, or '' (never raises)."""
    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except WebDriverException:
        return ""


def rate_of(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(k?)", text.strip())
    if not match:
        return 0.0
    return float(match.group(1)) * (1000 if match.group(2) else 1)


def readme_example() -> dict[str, Any]:
    """The ``/api/cluster`` example in the README."""
    text = (ROOT / "README.md").read_text()
    block = text.split("**`/api/cluster`**", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block)  # type: ignore[no-any-return]


def documented_as(real: dict[str, Any], documented: dict[str, Any]) -> None:
    """The fixed fields of the real JSON are the README's, two levels down."""
    assert set(real) == set(documented)
    for key, value in documented.items():
        if isinstance(value, dict) and key not in ("names", "routes", "by_reason"):
            assert set(real[key]) == set(value), key


def test_the_cluster_page_shows_nodes_actors_routes_rates_and_dead_letters(
    etcd_url: str, browser: webdriver.Chrome
) -> None:
    cluster = "p" + uuid.uuid4().hex[:8]
    flags = ["--etcd", etcd_url, "--cluster", cluster]
    app = ["--app", "tests.integration.node.apps:echo"]
    with (
        running_node(*flags, *app, "--metrics-port", "0", "--capability", "gpu", name="alpha")
        as alpha,
        running_node(*flags, *app, name="beta") as beta,
    ):  # fmt: skip
        # /metrics has every dead-letter reason and the backlog gauge from the start.
        metrics = get_text(alpha.metrics + "/metrics")
        for reason in DEAD_LETTER_REASONS:
            assert f'taskmesh_messages_dead_total{{reason="{reason}"}} 0.0' in metrics
        assert 'taskmesh_capability_backlog{capability="echo"} 0.0' in metrics

        client = taskmesh.connect(etcd=etcd_url, cluster=cluster)
        stop_traffic = threading.Event()
        sender = threading.Thread(target=lambda: None)
        try:
            # The backlog gauge counts what waits at the holders of a capability.
            client.tell("echo-alpha", {"sleep": 3})
            for i in range(5):
                client.tell("echo-alpha", {"record": i})
            wait_until(
                lambda: 'taskmesh_capability_backlog{capability="echo"} 5.0'
                in get_text(alpha.metrics + "/metrics"),
                timeout=30, interval=0.1, message="a backlog of 5 behind the sleeping echo-alpha",
            )  # fmt: skip

            # Three tells to a name beta does not host: dead letters on beta.
            ghost = client.transport.ref(beta.address, "ghost")
            for i in range(3):
                ghost.tell({"lost": i})
            client.transport.flush()

            # The JSON behind the page, as documented in the README.
            def api_ready() -> dict[str, object] | None:
                report = get_json(alpha.metrics + "/api/cluster")
                members = {m["node"]: m for m in report["members"]}  # type: ignore[attr-defined]
                if (
                    set(members) != {"alpha", "beta"}
                    or members["beta"]["dead_letters"]["total"] < 3
                ):
                    return None
                return report

            report = wait_until(
                api_ready, timeout=30, interval=0.1, message="both nodes and beta's dead letters"
            )
            assert report["cluster"] == cluster and report["served_by"] == "alpha"
            assert report["leader"] in ("alpha", "beta")
            members = {m["node"]: m for m in report["members"]}  # type: ignore[attr-defined]
            assert members["alpha"]["capabilities"] == ["gpu"]
            assert members["alpha"]["address"] == alpha.address
            assert [a["name"] for a in members["beta"]["actors"]] == ["echo-beta"]
            assert members["beta"]["actors"][0]["capabilities"] == ["echo"]
            assert members["beta"]["dead_letters"]["by_reason"] == {"actor_not_found": 3}
            assert members["beta"]["dead_letters"]["recent"][-1]["message"] == "{'lost': 2}"
            assert report["routes"] == {
                "echo": [{"actor": "echo-alpha", "node": "alpha"},
                         {"actor": "echo-beta", "node": "beta"}],
                # every node's workflow coordinator (see docs/platform.md)
                "taskmesh.workflows": [{"actor": "_workflows", "node": "alpha"},
                                       {"actor": "_workflows", "node": "beta"}],
            }  # fmt: skip
            assert not members["alpha"]["suspect"] and members["alpha"]["error"] is None
            example = readme_example()
            documented_as(report, example)
            documented_as(members["beta"], example["members"][0])
            documented_as(members["beta"]["actors"][0], example["members"][0]["actors"][0])
            documented_as(
                members["beta"]["dead_letters"]["recent"][0],
                example["members"][0]["dead_letters"]["recent"][0],
            )
            assert set(report["routes"]["echo"][0]) == set(example["routes"]["echo"][0])

            # The same letters through the CLI, asked of every node through the mesh.
            letters = cli("dead-letters", *flags, "--json", "--last", "2")
            assert letters.returncode == 0, letters.stderr
            by_node = {n["node"]: n for n in json.loads(letters.stdout)["nodes"]}
            assert by_node["beta"]["by_reason"] == {"actor_not_found": 3}
            assert [d["message"] for d in by_node["beta"]["recent"]] == [
                "{'lost': 1}", "{'lost': 2}"
            ]  # fmt: skip
            assert by_node["alpha"]["total"] == 0
            text = cli("dead-letters", *flags)
            assert text.returncode == 0, text.stderr
            assert re.search(r"beta\s+actor_not_found\s+3", text.stdout), text.stdout

            # The page itself, in a real browser.
            browser.get(alpha.metrics + "/")
            for css in ('tr[data-node="alpha"]', 'tr[data-node="beta"]',
                        'tr[data-actor="echo-beta"]', 'tr[data-capability="echo"]',
                        'tr[data-reason="actor_not_found"]'):  # fmt: skip
                wait_until(
                    lambda css=css: shown(browser, css), timeout=30, interval=0.1, message=css
                )
            assert "leader" in shown(browser, f'tr[data-node="{report["leader"]}"]')
            assert "echo-alpha @ alpha" in shown(browser, 'tr[data-capability="echo"]')
            assert shown(browser, 'tr[data-reason="actor_not_found"]').endswith("3")
            assert shown(browser, "#total-members") == "2"

            def traffic() -> None:
                while not stop_traffic.is_set():
                    for i in range(200):
                        client.tell("echo-beta", i)
                    stop_traffic.wait(0.02)

            sender = threading.Thread(target=traffic, daemon=True)
            sender.start()
            wait_until(
                lambda: rate_of(shown(browser, '[data-rate-in="beta"]')) >= 100,
                timeout=40,
                interval=0.1,
                message="beta's inbound rate on the page to pass 100/s",
            )
            assert rate_of(shown(browser, "#total-in")) >= 100
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "cluster-page.png"))
            assert (ARTIFACTS / "cluster-page.png").stat().st_size > 10_000
        finally:
            stop_traffic.set()
            if sender.is_alive():
                sender.join(30)
            client.close()


def test_the_page_files_ship_in_the_package() -> None:
    from importlib import resources

    static = resources.files("taskmesh.ops") / "static"
    for name in ("index.html", "app.js", "style.css"):
        text = (static / name).read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name
        assert "https://" not in text, f"{name} must not load anything from the internet"
    assert Path(str(static / "index.html")).is_file()
