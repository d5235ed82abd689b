"""The task platform: highly available schedules and workflows (Celery's beat
and canvas, with no broker and no single point of failure).

- `Schedule` / `Scheduler`: interval and cron schedules stored in etcd,
  fired by the leader only, each tick once across leader failover.
- `step`, `chain`, `group`, `chord`: workflows of asks, driven by a
  coordinator actor in the cluster whose state lives in etcd.
- `Limit`: a cluster-wide rate or concurrency limit per capability, obeyed
  by every node and client (tokens and slots leased from etcd in batches).
"""

from __future__ import annotations

from .canvas import Chain, Chord, Group, Step, Workflow, chain, chord, group, step
from .limits import Limit, LimitInfo
from .schedules import Schedule, ScheduleInfo
from .workflows import WorkflowInfo

__all__ = [
    "Chain",
    "Chord",
    "Group",
    "Limit",
    "LimitInfo",
    "Schedule",
    "ScheduleInfo",
    "Step",
    "Workflow",
    "WorkflowInfo",
    "chain",
    "chord",
    "group",
    "step",
]
