"""The fixtures are unedited copies of the shared material, and the package's own copies equal them.

Tests compare the package with these files (schemas, code lists, the SSB grouping) and reconstruct the
spec's worked example from them, so a fixture edited by hand or re-encoded by an editor would make those
tests compare against the wrong thing. tests/fixtures/README.md lists each copy's origin and SHA-256.
"""

import hashlib
import re
from importlib import resources

import pytest

from tests.conftest import CODE_LISTS, FIXTURES

# a path that leaves the checkout: `Path(__file__).parents[2] / "shared"` was how tests reached ../shared
LEAVES_THE_CHECKOUT = re.compile(r"""parents\[[2-9]\]|\.\./shared|["']shared["']""")
NOT_COPIES = {"README.md", "definitions.txt"}  # the origin list itself and the definitions snapshot
LISTED = re.compile(r"^\| `(?P<fixture>[^`]+)` \| `shared/[^`]+` \| `(?P<sha256>[0-9a-f]{64})` \|$", re.M)


def _listed() -> dict[str, str]:
    return {m["fixture"]: m["sha256"] for m in LISTED.finditer((FIXTURES / "README.md").read_text(encoding="utf-8"))}


def test_every_fixture_is_listed_with_its_origin():
    present = {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*") if p.is_file()} - NOT_COPIES
    assert present, FIXTURES
    assert sorted(present) == sorted(_listed())


@pytest.mark.parametrize(("fixture", "sha256"), sorted(_listed().items()))
def test_fixture_is_byte_identical_to_its_source(fixture, sha256):
    assert hashlib.sha256((FIXTURES / fixture).read_bytes()).hexdigest() == sha256


def test_every_published_code_list_is_packaged():
    published = sorted(p.name for p in CODE_LISTS.glob("*.csv"))
    assert published == ["funksjonsvariabler.csv", "person-id-type-9032.csv", "tjenestetype-9151.csv"]


@pytest.mark.parametrize("name", sorted(p.name for p in CODE_LISTS.glob("*.csv")))
def test_packaged_code_list_is_byte_identical_to_the_published(name):
    """The charts name service types from the packaged 9151 list: an edit there renames a service in every
    report. (The SSB grouping and the XPR 56 schemas: test_kommuner.py, test_serializer_xpr56.py.)"""
    packaged = resources.files("transforms.reference.data").joinpath(name)
    assert packaged.read_bytes() == (CODE_LISTS / name).read_bytes()


def test_no_test_reaches_outside_the_checkout():
    """A clone has nothing beside it: what a test reads from outside the package is in tests/fixtures."""
    tests = FIXTURES.parent
    offenders = [f"{p.name}:{n}" for p in sorted(tests.rglob("*.py")) if p.name != "test_fixtures.py"
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if LEAVES_THE_CHECKOUT.search(line)]
    assert offenders == []
