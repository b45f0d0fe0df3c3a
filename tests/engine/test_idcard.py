"""The 18-digit resident ID: shape, birth date, check digit; masking."""

from __future__ import annotations

from datetime import date

import pytest

from engine import idcard

TODAY = date(2026, 11, 25)
# GB 11643-1999's worked example: 11010519491231002X.
VALID = "11010519491231002X"


def test_a_valid_number_passes_and_is_normalised() -> None:
    assert idcard.validate(VALID, TODAY) == VALID
    assert idcard.validate(" 110105 19491231 002x ", TODAY) == VALID


def test_a_digit_check_character() -> None:
    number = "53342319600101002" + idcard.check_character("53342319600101002")
    assert idcard.validate(number, TODAY) == number


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("110105194912310021", "check digit"),
        ("11010519491331002X", "birth date"),  # month 13
        ("11010519490230002X", "birth date"),  # 30 February
        ("11010520301231002X", "not possible"),  # born in the future
        ("11010519491231002", "18 characters, not 17"),
        ("11010519491231002XX", "18 characters, not 19"),
        ("1101051949123100AX", "17 digits"),
        ("91010519491231002X", "address code"),
    ],
)
def test_invalid_numbers_say_why(number: str, reason: str) -> None:
    with pytest.raises(idcard.InvalidId) as err:
        idcard.validate(number, TODAY)
    assert reason in str(err.value)
    assert number[:14] not in str(err.value)  # the message never repeats the number


def test_mask_shows_only_the_ends() -> None:
    assert idcard.mask(VALID) == "110*************2X"
    assert idcard.mask("") == ""
