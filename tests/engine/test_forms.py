"""Amounts and dates in step forms are taken only as people write them; anything Python's own
parsers would also accept (exponents, underscores, signs, week dates) is refused by name."""

from __future__ import annotations

from datetime import date

import pytest

from engine.errors import FormError
from engine.forms import Field, Form, validate

FORM = Form("test", (Field("amount", "money"), Field("day", "date")))
TODAY = date(2026, 11, 25)


@pytest.mark.parametrize(
    ("typed", "taken"),
    [
        ("1234.50", 1234.5),
        (" 12 ", 12.0),
        ("1,000.25", 1000.25),
        ("12,345,678", 12345678.0),
        (0, 0.0),
        (99.5, 99.5),
        ("0.1", 0.1),
    ],
)
def test_amounts_as_written_are_taken(typed: object, taken: float) -> None:
    assert validate(FORM, {"amount": typed}, TODAY)["amount"] == taken


@pytest.mark.parametrize(
    "typed",
    [
        "1_000",
        "1e3",
        "-0",
        "-5",
        "+5",
        "NaN",
        "Infinity",
        "1,0000",
        "10,00",
        ",100",
        "0x10",
        "１２",
        "12.",
        ".5",
        "1 000",
        1e20,
        -1,
        "1.005",
    ],
)
def test_other_amounts_are_refused_by_name(typed: object) -> None:
    with pytest.raises(FormError) as refused:
        validate(FORM, {"amount": typed}, TODAY)
    assert set(refused.value.errors) == {"amount"}


@pytest.mark.parametrize(
    "typed", ["20261201", "2026-W49-1", "2026/12/01", "2026-02-30", "２０２６-１２-０１"]
)
def test_dates_are_year_month_day_only(typed: str) -> None:
    with pytest.raises(FormError) as refused:
        validate(FORM, {"day": typed}, TODAY)
    assert "YYYY-MM-DD" in refused.value.errors["day"]
    assert validate(FORM, {"day": " 2026-12-01 "}, TODAY)["day"] == "2026-12-01"
