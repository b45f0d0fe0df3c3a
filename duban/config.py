"""Where duban finds its database, processes and seed data."""

from __future__ import annotations

import os
from pathlib import Path

from engine.db import DEFAULT_URL

ROOT = Path(__file__).resolve().parent.parent
PROCESSES_DIR = Path(os.environ.get("DUBAN_PROCESSES", ROOT / "processes"))
DATA_DIR = Path(os.environ.get("DUBAN_DATA", ROOT / "data"))


def database_url() -> str:
    return os.environ.get("DUBAN_DATABASE_URL", DEFAULT_URL)
