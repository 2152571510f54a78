"""Reading back what a flow run left on the Prefect server, without racing it.

Prefect 3 sends task-run states to the server as events, which the server records a moment
later: right after a flow returns, its task runs may still read ``Running`` (or be missing)
on a loaded machine. Tests read them through :func:`settled_task_runs`, which waits (bounded)
until every task run of the flow run has a final state.
"""

from __future__ import annotations

import time
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId


def settled_task_runs(
    flow_run_id: Any, expect: set[str] | frozenset[str] = frozenset(), timeout_s: float = 120
) -> list:
    """Task runs of one flow run, once all are final and the names in ``expect`` are there
    (a task run is named ``<task>-<suffix>``)."""
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            names = {r.name.rsplit("-", 1)[0] for r in runs}
            settled = all(r.state is not None and r.state.is_final() for r in runs)
            if (settled and expect <= names) or time.monotonic() > deadline:
                return runs
            time.sleep(0.5)


def settled_task_states(
    flow_run_id: Any, expect: set[str] | frozenset[str] = frozenset(), timeout_s: float = 120
) -> dict[str, str]:
    """Task name -> final state name of one flow run."""
    runs = settled_task_runs(flow_run_id, expect, timeout_s)
    return {r.name.rsplit("-", 1)[0]: r.state.name for r in runs if r.state}
