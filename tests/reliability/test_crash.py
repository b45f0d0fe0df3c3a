"""A worker killed with SIGKILL in the middle of completing a step: the step is done entirely
or not at all, and the item continues."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from engine.models import HumanTask, Instance, TaskState
from engine.routing import hand_out
from tests.conftest import ROOT
from tests.engine.test_escalation import _subprocess_url
from tests.helpers import act, completed_count, open_steps

# Completes the step inside a transaction, says so, and waits to be killed before committing.
WORKER = """
import sys, time
from engine.db import make_engine, session_factory
from engine.clock import utcnow
from engine.models import HumanTask
from engine.runtime import Actor, complete_task
factory = session_factory(make_engine(sys.argv[1]))
with factory.begin() as s:
    step = s.get(HumanTask, int(sys.argv[2]))
    complete_task(s, step.id, Actor(step.position_id), {"note": "收到"}, utcnow())
    s.flush()
    print("written, not committed", flush=True)
    time.sleep(60)
"""


def test_a_worker_killed_mid_step_leaves_it_undone_and_the_item_continues(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
        item_id = item.id
    with seeded() as s:
        step = open_steps(s, item_id)[0]
        revision = s.get(Instance, step.instance_id).revision
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, _subprocess_url(seeded), str(step.id)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "written, not committed"
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    worker.stdout.close()
    with seeded() as s:
        assert s.get(HumanTask, step.id).state == TaskState.READY
        assert s.get(Instance, step.instance_id).revision == revision
        assert completed_count(s) == 0
    act(seeded, step, clock)  # the next attempt goes through
    with seeded() as s:
        assert completed_count(s) == 1
        assert s.get(HumanTask, step.id).state == TaskState.COMPLETED
