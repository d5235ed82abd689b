"""GroupCommit: concurrent requests share commits; each gets its own result or error."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from taskmesh.cluster.batching import GroupCommit


def test_a_lone_caller_commits_its_own_request() -> None:
    group: GroupCommit[int, int] = GroupCommit(lambda batch: [x * 2 for x in batch])
    assert [group.submit(i) for i in range(3)] == [0, 2, 4]
    assert group.batches == 3


def test_requests_queued_during_a_commit_share_the_next_one() -> None:
    inside = threading.Event()
    release = threading.Event()
    sizes: list[int] = []

    def commit(batch: Sequence[int]) -> list[int]:
        sizes.append(len(batch))
        if len(sizes) == 1:
            inside.set()
            release.wait(10)
        return [x + 100 for x in batch]

    group: GroupCommit[int, int] = GroupCommit(commit, max_batch=4)
    results: dict[int, int] = {}

    def submit(x: int) -> None:
        results[x] = group.submit(x)

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    assert inside.wait(10)
    others = [threading.Thread(target=submit, args=(x,)) for x in range(1, 7)]
    for t in others:
        t.start()
    # Wait until all six wait behind the first commit, then let it finish.
    while len(group._queue) < 6:
        threading.Event().wait(0.005)
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert results == {x: x + 100 for x in range(7)}
    assert sizes == [1, 4, 2]


def test_a_failed_commit_fails_every_request_of_its_batch() -> None:
    def commit(batch: Sequence[str]) -> list[str]:
        raise RuntimeError("etcd said no")

    group: GroupCommit[str, str] = GroupCommit(commit)
    with pytest.raises(RuntimeError, match="etcd said no"):
        group.submit("x")
    with pytest.raises(RuntimeError):
        group.submit("y")
