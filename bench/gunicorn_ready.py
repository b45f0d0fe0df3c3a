"""gunicorn settings for bench_web.py: each worker says when it has loaded the app, so the
clients connect only once every worker can take connections. Without it the first worker up
accepted all 16 keep-alive connections while the second was still importing, and served the
whole run alone (seen with py-spy on 2026-11-26: one worker had never started a thread)."""

import os
from pathlib import Path


def post_worker_init(worker) -> None:  # type: ignore[no-untyped-def]  # gunicorn's hook
    Path(os.environ["DUBAN_BENCH_READY"], str(worker.pid)).touch()
