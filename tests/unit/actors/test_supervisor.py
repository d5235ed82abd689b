from __future__ import annotations

import threading
import time

import pytest

import taskmesh
from taskmesh.actors import ActorSystem, Backoff, Child, Supervisor
from tests.unit.actors.support import Gate, Journal, Kind, Worker
from tests.waiting import wait_until

NOW = Backoff(initial=0)


def three(kind: Kind, journal: Journal, restart: str = "permanent") -> list[Child]:
    return [
        Child(kind(Worker), name=n, restart=restart, kwargs={"journal": journal})  # type: ignore[arg-type]
        for n in ("a", "b", "c")
    ]


def generation(system: ActorSystem, name: str) -> int:
    info = system.info(name)
    return 0 if info is None else info.generation


def generations(system: ActorSystem) -> dict[str, int]:
    return {name: generation(system, name) for name in ("a", "b", "c")}


def test_children_start_in_order_and_stop_in_reverse_order(
    system: ActorSystem, journal: Journal, kind: Kind
) -> None:
    sup = system.spawn(Supervisor, name="sup", children=three(kind, journal))
    assert journal.of("start") == ["a", "b", "c"]
    sup.stop()
    assert journal.of("stop") == ["c", "b", "a"]
    assert system.names() == []


def test_one_for_one_restarts_only_the_failed_child(
    system: ActorSystem, journal: Journal, kind: Kind
) -> None:
    system.spawn(
        Supervisor, name="sup", strategy="one_for_one", backoff=NOW, children=three(kind, journal)
    )
    with pytest.raises(ValueError):
        system.ref("b").ask("boom")
    wait_until(lambda: generations(system) == {"a": 1, "b": 2, "c": 1})
    assert system.ref("b").ask("ping") == "ping"
    assert journal.of("restart") == ["b"]


def test_one_for_all_restarts_every_child_stopping_in_reverse_and_starting_in_order(
    system: ActorSystem, journal: Journal, kind: Kind
) -> None:
    system.spawn(
        Supervisor, name="sup", strategy="one_for_all", backoff=NOW, children=three(kind, journal)
    )
    with pytest.raises(ValueError):
        system.ref("b").ask("boom")
    wait_until(lambda: generations(system) == {"a": 2, "b": 2, "c": 2})
    assert journal.of("stop") == ["c", "b", "a"]
    assert journal.of("start") == ["a", "b", "c", "a", "b", "c"]


def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it(
    system: ActorSystem, journal: Journal, kind: Kind
) -> None:
    system.spawn(
        Supervisor, name="sup", strategy="rest_for_one", backoff=NOW, children=three(kind, journal)
    )
    with pytest.raises(ValueError):
        system.ref("b").ask("boom")
    wait_until(lambda: generations(system) == {"a": 1, "b": 2, "c": 2})
    assert journal.of("stop") == ["c", "b"]
    assert journal.of("restart") == ["b", "c"]


def test_a_permanent_child_is_restarted_after_a_normal_exit(
    system: ActorSystem, journal: Journal, kind: Kind
) -> None:
    system.spawn(Supervisor, name="sup", backoff=NOW, children=three(kind, journal, "permanent"))
    assert system.ref("a").ask("exit") == "exiting"
    wait_until(lambda: generation(system, "a") == 2)
    assert system.ref("a").ask("ping") == "ping"


def test_a_transient_child_is_restarted_after_a_failure_but_not_after_a_normal_exit(
    system: ActorSystem, journal: Journal, kind: Kind
) -> None:
    system.spawn(Supervisor, name="sup", backoff=NOW, children=three(kind, journal, "transient"))
    with pytest.raises(ValueError):
        system.ref("a").ask("boom")
    wait_until(lambda: generation(system, "a") == 2)
    system.ref("b").ask("exit")
    wait_until(lambda: "b" not in system.names())
    assert system.ref("c").ask("ping") == "ping"


def test_a_temporary_child_is_never_restarted(
    system: ActorSystem, journal: Journal, kind: Kind
) -> None:
    sup = system.spawn(
        Supervisor, name="sup", backoff=NOW, children=three(kind, journal, "temporary")
    )
    with pytest.raises(ValueError):
        system.ref("a").ask("boom")
    wait_until(lambda: "a" not in system.names())
    assert [c["name"] for c in sup.ask("which_children")] == ["b", "c"]
    assert journal.of("restart") == []


def test_decider_outcomes(system: ActorSystem, journal: Journal, kind: Kind) -> None:
    decider = {KeyError: "resume", ValueError: "restart", TypeError: "stop"}
    system.spawn(
        Supervisor,
        name="sup",
        decider=decider,
        backoff=NOW,
        children=[Child(kind(Worker), name="w", kwargs={"journal": journal})],
    )
    w = system.ref("w")
    w.ask(1)
    with pytest.raises(KeyError):
        w.ask("key")
    assert w.ask("state") == 1, "resume keeps the instance and its state"
    with pytest.raises(ValueError):
        w.ask("boom")
    assert w.ask("state") == 0, "restart gives a fresh instance"
    with pytest.raises(TypeError):
        w.ask("type")
    wait_until(lambda: "w" not in system.names())


def test_decider_escalate_makes_the_supervisor_fail_to_its_parent(
    system: ActorSystem, journal: Journal, kind: Kind
) -> None:
    system.spawn(
        Supervisor,
        name="top",
        backoff=NOW,
        children=[
            Child(
                Supervisor,
                name="mid",
                kwargs={
                    "decider": lambda e: "escalate",
                    "backoff": NOW,
                    "children": [Child(kind(Worker), name="w", kwargs={"journal": journal})],
                },
            ),
        ],
    )
    with pytest.raises(ValueError):
        system.ref("w").ask("boom")
    wait_until(lambda: generation(system, "mid") == 2)
    assert system.ref("w").ask("ping") == "ping"
    assert journal.of("start") == ["w", "w"]


def test_a_decider_callable_is_used_and_a_bad_answer_escalates(
    system: ActorSystem, kind: Kind
) -> None:
    calls: list[BaseException] = []

    def decider(error: BaseException) -> str:
        calls.append(error)
        return "resume" if isinstance(error, ValueError) else "ignore it"

    system.spawn(
        Supervisor,
        name="sup",
        decider=decider,
        backoff=NOW,
        children=[Child(kind(Worker), name="w")],
    )
    w = system.ref("w")
    w.ask(1)
    with pytest.raises(ValueError):
        w.ask("boom")
    assert w.ask("state") == 1, "resumed: the same instance"
    assert [type(e) for e in calls] == [ValueError]
    with pytest.raises(KeyError):
        w.ask("key")
    # "ignore it" is no directive: the supervisor escalates, and its parent
    # (the root) restarts it with fresh children
    wait_until(lambda: generation(system, "sup") == 2)
    wait_until(
        lambda: (info := system.info("w")) is not None and info.started, message="the new child"
    )
    assert system.ref("w").ask("state") == 0


def test_intensity_exceeded_escalates_through_two_levels_to_the_root(
    system: ActorSystem, journal: Journal, kind: Kind
) -> None:
    failed_trees: list[tuple[str, BaseException]] = []
    done = threading.Event()

    def on_failure(name: str, error: BaseException) -> None:
        failed_trees.append((name, error))
        done.set()

    system.on_tree_failure(on_failure)
    system.spawn(
        Supervisor,
        name="top",
        max_restarts=1,
        within=60,
        backoff=NOW,
        children=[
            Child(
                Supervisor,
                name="mid",
                kwargs={
                    "max_restarts": 2,
                    "within": 60,
                    "backoff": NOW,
                    "children": [Child(kind(Worker), name="w", kwargs={"journal": journal})],
                },
            ),
        ],
    )

    def crash_worker_three_times() -> None:
        for _ in range(3):
            wait_until(lambda: (info := system.info("w")) is not None and info.started)
            before = system.restart_count
            with pytest.raises(ValueError):
                system.ref("w").ask("boom")
            wait_until(
                lambda before=before: system.restart_count > before or system.info("w") is None,
                message="the failure handled",
            )

    crash_worker_three_times()  # mid exceeds 2 restarts: top restarts mid
    wait_until(lambda: generation(system, "mid") == 2)
    crash_worker_three_times()  # again: top exceeds 1 restart and escalates to the root
    assert done.wait(30), "the root was not told"
    assert failed_trees[0][0] == "top"
    assert isinstance(failed_trees[0][1], taskmesh.RestartIntensityExceeded)
    wait_until(lambda: system.names() == [])


def test_restart_keeps_the_address_and_the_queued_messages(system: ActorSystem, kind: Kind) -> None:
    gate = Gate()
    system.spawn(
        Supervisor,
        name="sup",
        backoff=NOW,
        children=[Child(kind(Worker), name="w", kwargs={"gate": gate})],
    )
    ref = system.ref("w")
    before = ref.ask("id")
    failing = ref.ask_async("wait-then-boom", timeout=30)
    for i in range(10):
        ref.tell(i)
    gate.set()
    with pytest.raises(ValueError, match="boom after wait"):
        failing.get(30)
    assert ref.ask("handled") == list(range(10)), "queued messages reach the new instance"
    assert ref.ask("id") != before, "a fresh instance"


def test_backoff_delays_the_restart(system: ActorSystem, kind: Kind) -> None:
    system.spawn(
        Supervisor,
        name="sup",
        backoff=Backoff(initial=0.3, maximum=0.3, jitter=0),
        children=[Child(kind(Worker), name="w")],
    )
    with pytest.raises(ValueError):
        system.ref("w").ask("boom")
    started = time.monotonic()
    assert system.ref("w").ask("ping", timeout=30) == "ping"
    assert time.monotonic() - started >= 0.25


def test_backoff_grows_exponentially_up_to_its_cap_with_bounded_jitter() -> None:
    backoff = Backoff(initial=0.1, factor=2, maximum=1.0, jitter=0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 6)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )
    jittered = Backoff(initial=1.0, maximum=1.0, jitter=0.2)
    delays = [jittered.delay(1) for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len(set(delays)) > 1
    assert Backoff(initial=0).delay(10) == 0


def test_a_thousand_restarts_leak_no_threads(system: ActorSystem, kind: Kind) -> None:
    system.spawn(
        Supervisor,
        name="sup",
        max_restarts=10**6,
        backoff=NOW,
        children=[Child(kind(Worker), name="w")],
    )
    ref = system.ref("w")
    ref.ask("ping")
    baseline = threading.active_count()
    for _ in range(1000):
        with pytest.raises(ValueError):
            ref.ask("boom")
    assert ref.ask("ping") == "ping"
    assert generation(system, "w") == 1001
    assert threading.active_count() == baseline


def test_restarting_whole_subtrees_leaks_no_threads(system: ActorSystem, kind: Kind) -> None:
    system.spawn(
        Supervisor,
        name="top",
        max_restarts=10**6,
        backoff=NOW,
        children=[
            Child(
                Supervisor,
                name="mid",
                kwargs={
                    "decider": lambda e: "escalate",
                    "backoff": NOW,
                    "children": [Child(kind(Worker), name="w1"), Child(kind(Worker), name="w2")],
                },
            )
        ],
    )
    wait_until(lambda: system.ref("w2").ask("ping") == "ping")
    baseline = threading.active_count()
    for number in range(2, 102):
        with pytest.raises(ValueError):
            system.ref("w1").ask("boom")
        wait_until(lambda g=number: generation(system, "mid") == g and "w2" in system.names())
    wait_until(lambda: threading.active_count() == baseline, message="threads to exit")


def test_invalid_supervisor_settings_are_refused(system: ActorSystem, kind: Kind) -> None:
    with pytest.raises(taskmesh.ConfigError):
        Supervisor(strategy="one_for_most")  # type: ignore[arg-type]
    with pytest.raises(taskmesh.ConfigError):
        Child(Worker, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(taskmesh.ConfigError):
        Supervisor(decider={ValueError: "ignore"})
    with pytest.raises(taskmesh.ConfigError):
        Backoff(factor=0.5)


def test_a_top_level_actor_is_restarted_after_a_failure(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Worker), name="w")
    ref.ask(1)
    with pytest.raises(ValueError):
        ref.ask("boom")
    assert ref.ask("state") == 0
    assert system.restart_count == 1


def test_a_top_level_actor_failing_too_often_is_stopped_and_reported(kind: Kind) -> None:
    reported: list[str] = []
    with taskmesh.ActorSystem(max_restarts=2, within=60, backoff=NOW) as system:
        system.on_tree_failure(lambda name, error: reported.append(name))
        ref = system.spawn(kind(Worker), name="w")
        for _ in range(3):
            wait_until(ref.is_alive)
            with pytest.raises(ValueError):
                ref.ask("boom")
        wait_until(lambda: reported == ["w"])
        assert system.names() == []
