"""The `duban` command line, run in-process against the test database."""

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from duban.cli import main
from engine.models import Instance, Plan
from tests.conftest import DATA, PROCESSES


@pytest.fixture
def duban(sessions, database_url, engine, monkeypatch):
    from duban import cli

    # The CLI builds its engine from the URL; hand it the test's engine (and, on PostgreSQL,
    # the test's own schema) instead.
    monkeypatch.setattr(cli.Context, "engine", property(lambda self: engine))
    runner = CliRunner()

    def run(*args: str):
        env = {"DUBAN_DATABASE_URL": database_url}
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return run


def test_seed_then_hand_out_then_complete(duban, sessions):
    first = duban("seed")
    assert first.exit_code == 0, first.output
    assert duban("seed").exit_code == 0  # idempotent
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Plan)) == 2
    out = duban("hand-out", "weixi-2023-15", "--task", "7")
    assert out.exit_code == 0 and "weixi-2023-15#7" in out.output
    listed = json.loads(duban("tasks", "--unit", "县农业农村局", "--json").output)
    assert [(t["name"], t["unit"]) for t in listed] == [("签收", "县农业农村局")]
    done = duban("complete", str(listed[0]["step"]), "--as", "县农业农村局", "--set", "note=收到")
    assert done.exit_code == 0, done.output
    # The acknowledgement ends the unit's branch, not the item, which the line is about.
    assert done.output.strip().endswith("completed; weixi-2023-15#7 is running")
    shown = duban("show", "weixi-2023-15#7")
    assert "completed" in shown.output and "note" in shown.output


def test_wrong_unit_and_bad_form_fail_with_a_clear_message(duban):
    duban("seed")
    duban("hand-out", "weixi-2023-15", "--task", "7")
    step = json.loads(duban("tasks", "--unit", "县卫生健康局", "--json").output)[0]["step"]
    wrong = duban("complete", str(step), "--as", "县财政局")
    assert wrong.exit_code == 1 and "belongs to 县卫生健康局" in wrong.output
    bad = duban("complete", str(step), "--as", "县卫生健康局", "--set", "colour=red")
    assert bad.exit_code == 1 and "colour: is not a field of form 'acknowledge'" in bad.output


def test_a_bad_import_exits_non_zero_and_imports_nothing(duban, sessions, tmp_path):
    duban("seed")
    text = (DATA / "tasklists" / "weixi-2023-15.toml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        text.replace('key = "weixi-2023-15"', 'key = "weixi-copy"').replace(
            '"县司法局"', '"县司发局"', 1
        ),
        encoding="utf-8",
    )
    result = duban("import", str(bad))
    assert result.exit_code == 1
    assert "nothing was imported" in result.output and "unknown unit '县司发局'" in result.output
    with sessions() as s:
        assert s.scalar(select(Plan).where(Plan.key == "weixi-copy")) is None


def test_hand_over_moves_the_seat(duban):
    duban("seed")
    out = duban(
        "hand-over",
        "--unit",
        "县卫生健康局",
        "--position",
        "office_director",
        "--to",
        "王五",
        "--title",
        "副局长",
    )
    assert out.exit_code == 0 and "王五" in out.output


def test_hand_out_everything_left(duban, sessions):
    duban("seed")
    duban("hand-out", "dehong-2023", "--task", "1")
    out = duban("hand-out", "dehong-2023")
    assert "28 item(s) handed out" in out.output
    with sessions() as s:
        top_level = select(func.count()).select_from(Instance).where(Instance.parent_id.is_(None))
        assert s.scalar(top_level) == 29


def test_scheduler_once_runs_every_job_and_repeats_nothing(duban, sessions):
    from engine.models import CalendarRun, HistoryEntry

    assert duban("seed").exit_code == 0
    assert duban("hand-out", "weixi-2023-15", "--task", "7").exit_code == 0
    first = duban("scheduler", "--once")
    assert first.exit_code == 0, first.output

    def counts() -> tuple[int, int]:
        with sessions() as s:
            runs = s.scalar(select(func.count()).select_from(CalendarRun)) or 0
            fired = s.scalar(
                select(func.count())
                .select_from(HistoryEntry)
                .where(HistoryEntry.action.in_(("reminded", "overdue", "urged", "escalated")))
            )
        return runs, fired or 0

    before = counts()
    assert duban("scheduler", "--once").exit_code == 0
    assert counts() == before  # whatever ran today does not run again


@pytest.mark.parametrize("odd", ["²", "99999999999999999999", "0"])
def test_odd_ids_are_refused_or_not_found_never_a_traceback(duban, odd):
    duban("seed")
    shown = duban("show", odd)
    assert shown.exit_code != 0 and f"no instance '{odd}'" in shown.output
    done = duban("complete", odd, "--as", "县卫生健康局")
    assert done.exit_code == 2 and "Invalid value for 'STEP'" in done.output


def test_an_unmigrated_database_is_named_with_what_to_do(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    out = CliRunner().invoke(main, ["--database", url, "show", "5"])
    assert out.exit_code == 1
    assert "no such table" in out.output and "duban db upgrade" in out.output
    assert "Traceback" not in out.output


def test_deploy_takes_files_and_directories_and_names_a_bad_one(duban, tmp_path):
    assert duban("seed").exit_code == 0
    out = duban("deploy", str(PROCESSES))
    assert out.exit_code == 0, out.output
    assert "task_routing v1 unchanged" in out.output
    out = duban("deploy", str(PROCESSES / "task_routing.bpmn"))
    assert out.exit_code == 0 and out.output.strip() == "task_routing v1 unchanged"
    out = duban("deploy", str(tmp_path))
    assert out.exit_code != 0 and f"{tmp_path}: no .bpmn or .dmn files" in out.output
