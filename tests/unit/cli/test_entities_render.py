from __future__ import annotations

import time

from taskmesh.cli.entities_cmd import render


def test_the_text_form_shows_shards_and_active_entities_per_node_and_the_last_rebalance() -> None:
    report = {
        "cluster": "demo",
        "types": [
            {
                "type": "device",
                "shards": 128,
                "unassigned": 3,
                "nodes": [
                    {"node": "n1", "shards": 64, "active": 1210, "buffered": 0, "draining": False},
                    {
                        "node": "n2",
                        "shards": 61,
                        "active": None,
                        "buffered": None,
                        "draining": True,
                    },
                ],
                "last_rebalance": {
                    "at": time.time() - 42,
                    "leader": "n1",
                    "assigned": 3,
                    "moved": 40,
                },
            }
        ],
    }
    lines = render(report).splitlines()
    assert lines[0] == "device: 128 shards, 3 unassigned (moving)"
    assert lines[1].split() == ["NODE", "SHARDS", "ACTIVE", "BUFFERED", "STATE"]
    assert lines[2].split() == ["n1", "64", "1210", "0", "serving"]
    assert lines[3].split() == ["n2", "61", "?", "?", "draining"]  # the node did not answer
    assert (
        lines[4].startswith("last rebalance 4") and "by n1: 3 shards assigned, 40 asked" in lines[4]
    )
    assert render({"cluster": "demo", "types": []}) == "cluster demo has no entity types"
