from __future__ import annotations

import taskmesh
import taskmesh.entities


def test_every_exported_name_exists_and_the_user_facing_ones_are_at_the_top() -> None:
    assert [n for n in taskmesh.entities.__all__ if not hasattr(taskmesh.entities, n)] == []
    for name in ("Entity", "EntityRef", "EtcdStore", "PostgresStore", "StateStore"):
        assert name in taskmesh.__all__
        assert getattr(taskmesh, name) is getattr(taskmesh.entities, name)
    for name in ("StaleActivation", "StateTooLarge"):
        assert issubclass(getattr(taskmesh, name), taskmesh.TaskmeshError)
