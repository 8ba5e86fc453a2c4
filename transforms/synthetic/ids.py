"""Synthetic identifiers: birth numbers in the national test range and organisation numbers.

The one generator of synthetic identifiers, for the worlds and for the tests. Person numbers
follow the test-data convention (birth month + 80) so that nothing the generator writes can be
a real person's number, and their check digits come from python-stdnum so that a reader
checking them with the same rules accepts them. D-numbers add 4 to the first digit. The
individual digits agree with the birth century and the third of them with sex (odd = male),
because readers may cross-check both.
"""

from __future__ import annotations

import numpy as np
from stdnum.no import fodselsnummer, orgnr

from .dates import to_date


def _with_check_digits(first9: str) -> str | None:
    """The 11-digit number, or None when a check digit would be 10 (no valid number exists)."""
    k1 = fodselsnummer.calc_check_digit1(first9)
    if len(k1) != 1:
        return None
    k2 = fodselsnummer.calc_check_digit2(first9 + k1)
    if len(k2) != 1:
        return None
    return first9 + k1 + k2


def _date_digits(day: int, month: int, year2: int, d_number: bool = False, h_number: bool = False) -> str:
    """DDMMYY of a synthetic number: month + 80 (an H-number's month + 40 instead), a D-number's day + 40."""
    dd = day + (40 if d_number else 0)
    mm = month + (40 if h_number else 80)
    return f"{dd:02d}{mm:02d}{year2:02d}"


def birth_number(day: int, month: int, year2: int, individual: int = 100, *, d_number: bool = False,
                 h_number: bool = False) -> str:
    """A birth number with valid check digits for a date and an individual number (tests' examples).

    Individual numbers whose check digit would be 10 are skipped: the next ones are tried. The date is
    not checked, so a 31 February makes a number that fails only the birth-date rule. An H-number
    (month + 40) is not in the +80 range: the convention has no room for both offsets.
    """
    for candidate in range(individual, individual + 50):
        number = _with_check_digits(f"{_date_digits(day, month, year2, d_number, h_number)}{candidate % 1000:03d}")
        if number is not None:
            return number
    raise ValueError(f"no valid birth number from individual number {individual} on")


def _birth_prefix(birth_day: int, d_number: bool) -> tuple[str, int]:
    """DDMMYY with the synthetic month (+80) and, for a D-number, day + 40; plus century base."""
    born = to_date(birth_day)
    return _date_digits(born.day, born.month, born.year % 100, d_number), (0 if born.year < 2000 else 500)


def person_numbers(
    rng: np.random.Generator, birth_days: np.ndarray, male: np.ndarray, d_number: np.ndarray, used: set[str]
) -> list[str]:
    """One unique synthetic number per person; `used` collects every number handed out."""
    n = len(birth_days)
    draws = rng.integers(0, 250, size=(n, 6))
    result = []
    for i in range(n):
        prefix, base = _birth_prefix(int(birth_days[i]), bool(d_number[i]))
        parity = 1 if male[i] else 0
        number = None
        candidates = [int(k) for k in draws[i]] + list(range(250))
        for k in candidates:
            number = _with_check_digits(f"{prefix}{base + 2 * k + parity:03d}")
            if number is not None and number not in used:
                break
        if number is None or number in used:
            raise RuntimeError(f"no free synthetic number for birth day {birth_days[i]}")
        used.add(number)
        result.append(number)
    return result


def break_check_digits(number: str) -> str:
    """The same number with a last digit that fails the mod-11 check (a bad-input sample): for a valid
    number, the last digit plus one."""
    for delta in range(1, 10):
        candidate = number[:10] + str((int(number[10]) + delta) % 10)
        if not fodselsnummer.is_valid(candidate) and _with_check_digits(candidate[:9]) != candidate:
            return candidate
    raise AssertionError("unreachable: only one last digit is valid")


def _org_check_digit(first8: str) -> str | None:
    calc = getattr(orgnr, "calc_check_digit", None)
    # python-stdnum without calc_check_digit: derive the digit from stdnum's own checksum
    digit = calc(first8) if calc is not None else str((11 - orgnr.checksum(first8 + "0")) % 11)
    return digit if len(digit) == 1 else None


def org_numbers(rng: np.random.Generator, count: int, used: set[str]) -> list[str]:
    """`count` unique valid organisation numbers (9 digits, starting 8 or 9, mod-11 check digit)."""
    result: list[str] = []
    while len(result) < count:
        body = rng.integers(0, 10, size=7)
        first8 = str(int(rng.integers(8, 10))) + "".join(str(int(d)) for d in body)
        digit = _org_check_digit(first8)
        if digit is None or first8 + digit in used:
            continue
        number = first8 + digit
        assert orgnr.is_valid(number)
        used.add(number)
        result.append(number)
    return result


def is_valid_synthetic(number: str) -> bool:
    """True for an 11-digit number in the test range (month + 80) with valid check digits."""
    if len(number) != 11 or not number.isdigit():
        return False
    month = int(number[2:4])
    if not 81 <= month <= 92:
        return False
    return _with_check_digits(number[:9]) == number
