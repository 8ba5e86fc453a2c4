"""Synthetic test identifiers (birth month + 80) with real check digits, for tests only."""

from __future__ import annotations

from stdnum.no import fodselsnummer


def synthetic_number(day: int, month: int, year2: int, individual: int, d_number: bool = False,
                     h_number: bool = False) -> str:
    """A valid synthetic birth number; retries individual numbers whose check digit would be 10."""
    for ind in range(individual, individual + 50):
        dd = day + (40 if d_number else 0)
        mm = month + 80 if not h_number else month + 40
        base = f"{dd:02d}{mm:02d}{year2:02d}{ind % 1000:03d}"
        k1 = fodselsnummer.calc_check_digit1(base)
        if len(k1) != 1:
            continue
        k2 = fodselsnummer.calc_check_digit2(base + k1)
        if len(k2) != 1:
            continue
        return base + k1 + k2
    raise ValueError("no valid number found")


def break_check_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)
