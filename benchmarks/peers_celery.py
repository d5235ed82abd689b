"""The Celery side of ``benchmarks/peers.py``: an app with one echo task.

``benchmarks/peers.py`` starts the worker as
``celery -A benchmarks.peers_celery -b URL --result-backend URL worker``
and sets the same URLs on ``app.conf`` in its own process, so nothing here
reads the environment. Importing this module needs Celery installed.
"""

from __future__ import annotations

from typing import Any

from celery import Celery  # type: ignore[import-not-found, import-untyped, unused-ignore]

app = Celery("peers")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="peers.echo")  # type: ignore[misc, untyped-decorator, unused-ignore]
def echo(message: Any) -> Any:
    """Return the message (runs in the worker process)."""
    return message
