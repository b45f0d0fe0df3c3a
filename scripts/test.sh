#!/usr/bin/env bash
# The whole test suite: lint, types, then pytest on SQLite and on PostgreSQL.
# PostgreSQL: $DUBAN_PG_URL (default: the local server, database `test`). Without CI set, an
# unreachable server skips that half with a warning; with CI set, it fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PG_URL=${DUBAN_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}

$BIN/ruff check .
$BIN/ruff format --check .
$BIN/mypy

echo "== tests on SQLite"
DUBAN_TEST_DATABASE_URL= $BIN/pytest "$@"

if $BIN/python - "$PG_URL" <<'PY'
import sys
from sqlalchemy import create_engine, text
try:
    with create_engine(sys.argv[1]).connect() as conn:
        conn.execute(text("select 1"))
except Exception as exc:
    print(f"PostgreSQL unreachable at {sys.argv[1]}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
then
    echo "== tests on PostgreSQL"
    DUBAN_TEST_DATABASE_URL=$PG_URL $BIN/pytest "$@"
elif [ -n "${CI:-}" ]; then
    echo "CI is set and PostgreSQL is unreachable: failing" >&2
    exit 1
else
    echo "WARNING: PostgreSQL tests skipped (set DUBAN_PG_URL, or start the server)" >&2
fi
