"""The 18-digit resident identity number (公民身份号码, GB 11643-1999): six digits of the
address code, the birth date as YYYYMMDD, a three-digit sequence and an ISO 7064 MOD 11-2
check character (0-9 or X)."""

from __future__ import annotations

import re
from datetime import date

_SHAPE = re.compile(r"\d{17}[\dX]")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# First digit of the address code: the regions 1 (North) to 8 (Hong Kong, Macao, Taiwan).
_REGIONS = set("12345678")


class InvalidId(ValueError):
    """Says what is wrong, never repeating the number itself (it is personal data)."""


def check_character(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def normalise(raw: str) -> str:
    """Strip spaces and accept a lower-case x, as people type it."""
    return re.sub(r"\s+", "", raw).upper()


def validate(raw: str, today: date) -> str:
    """The normalised number, or InvalidId with the reason."""
    number = normalise(raw)
    if len(number) != 18:
        raise InvalidId(f"must be 18 characters, not {len(number)}")
    if not _SHAPE.fullmatch(number):
        raise InvalidId("must be 17 digits followed by a digit or X")
    if number[0] not in _REGIONS:
        raise InvalidId("does not start with a valid address code")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidId("holds no valid birth date (characters 7 to 14)") from None
    if born > today or born.year < 1900:
        raise InvalidId("holds a birth date that is not possible")
    if check_character(number[:17]) != number[17]:
        raise InvalidId("check digit does not match: please check the number")
    return number


def birth_date(number: str) -> date:
    return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


def mask(number: str) -> str:
    """Only the first 3 and last 2 characters show, as receipts print it."""
    if len(number) < 6:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]
