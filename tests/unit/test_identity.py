import os
import stat

import polars as pl
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from transforms.privacy.identity import (
    TYPE_DNR,
    TYPE_DUF,
    TYPE_FNR,
    TYPE_HNR,
    Pseudonymizer,
    check_identifier,
    decrypt_frame,
    duf_check_digits,
    encrypt_frame,
    read_vault,
    write_vault_part,
)
from transforms.privacy.keys import MissingKeyError, init_key_file, load_keys
from transforms.synthetic.ids import birth_number, break_check_digits

EXAMPLE_IDS = ["14894710005", "07834110096"]  # the spec's example persons


@pytest.mark.parametrize("number", EXAMPLE_IDS)
def test_spec_examples_are_valid_synthetic_birth_numbers(number):
    check = check_identifier(number, allow_synthetic=True)
    assert check.rule_id is None and check.synthetic and check.id_type == TYPE_FNR


def test_synthetic_numbers_are_a_finding_unless_allowed():
    check = check_identifier(EXAMPLE_IDS[0], allow_synthetic=False)
    assert check.rule_id == "id.synthetic_not_allowed"


def test_broken_check_digit_is_rejected():
    assert check_identifier(break_check_digits(EXAMPLE_IDS[0]), allow_synthetic=True).rule_id == "id.check_digits"


def test_d_number_type_derived_from_digits():
    number = birth_number(12, 3, 55, 123, d_number=True)
    check = check_identifier(number, declared_type=TYPE_FNR, allow_synthetic=True)
    assert check.rule_id is None and check.id_type == TYPE_DNR


def test_h_number_type():
    number = birth_number(12, 3, 55, 123, h_number=True)
    check = check_identifier(number, allow_synthetic=False)
    assert check.rule_id is None and check.id_type == TYPE_HNR and not check.synthetic


def test_wrong_length_and_letters():
    assert check_identifier("1234", allow_synthetic=True).rule_id == "id.format"
    assert check_identifier("1489471000X", allow_synthetic=True).rule_id == "id.format"
    assert check_identifier("", allow_synthetic=True).rule_id == "id.missing"


def test_duf_numbers_by_their_own_rule():
    first_ten = "2015123456"
    good = first_ten + duf_check_digits(first_ten)
    assert check_identifier(good, declared_type=TYPE_DUF).id_type == TYPE_DUF
    assert check_identifier(good, declared_type=TYPE_DUF).rule_id is None
    bad = first_ten + f"{(int(duf_check_digits(first_ten)) + 1) % 100:02d}"
    assert check_identifier(bad, declared_type=TYPE_DUF).rule_id == "id.check_digits"


def test_other_identifier_kinds_pass_through_as_reported():
    assert check_identifier("P1234567", declared_type=9).rule_id is None


def test_pseudonyms_are_keyed_and_stable():
    a, b = Pseudonymizer(b"a" * 32), Pseudonymizer(b"b" * 32)
    assert a(EXAMPLE_IDS[0]) == a(EXAMPLE_IDS[0]) != b(EXAMPLE_IDS[0])
    assert EXAMPLE_IDS[0] not in a(EXAMPLE_IDS[0])
    assert EXAMPLE_IDS[0] not in a.tag(EXAMPLE_IDS[0])



@pytest.mark.parametrize("key", [b"k" * 32, b"", b"long key " * 10], ids=["32 bytes", "empty", "longer than a block"])
def test_pseudonyms_are_hmac_sha256_of_the_stripped_identifier(key):
    import hashlib
    import hmac

    identifiers = ["01818012345", " 01818012345 ", "æøå", ""]  # synthetic: birth month + 80
    expected = ["p" + hmac.new(key, i.strip().encode(), hashlib.sha256).hexdigest()[:31] for i in identifiers]
    assert Pseudonymizer(key).many(identifiers) == expected

def test_vault_roundtrip_and_wrong_key():
    frame = pl.DataFrame({"person_key": ["p1"], "fid": [EXAMPLE_IDS[0]], "id_type": [1]})
    blob = encrypt_frame(frame, b"k" * 32)
    assert EXAMPLE_IDS[0].encode() not in blob
    assert decrypt_frame(blob, b"k" * 32).equals(frame)
    with pytest.raises(InvalidTag):
        decrypt_frame(blob, b"x" * 32)


def test_identity_parts_are_sealed_arrow_and_merge_with_parquet_parts(tmp_path):
    """A source file's part is an Arrow IPC file (cheap to open at each merge); a part an older version wrote
    as Parquet still merges beside it, and the merged vault stays Parquet."""
    key = b"k" * 32
    first = pl.DataFrame({"person_key": ["p2", "p1"], "fid": EXAMPLE_IDS, "id_type": [1, 1]},
                         schema_overrides={"id_type": pl.Int32})
    second = pl.DataFrame({"person_key": ["p1", "p3"], "fid": [EXAMPLE_IDS[1], "07834110096"], "id_type": [1, 9]},
                          schema_overrides={"id_type": pl.Int32})
    write_vault_part(tmp_path / "new.bin", first, key, "arrow")
    write_vault_part(tmp_path / "old.bin", second, key)
    plain = {name: AESGCM(key).decrypt(blob[:12], blob[12:], b"ktt-backfill identity vault v1")
             for name, blob in ((p.name, p.read_bytes()) for p in tmp_path.iterdir())}
    assert plain["new.bin"].startswith(b"ARROW1") and plain["old.bin"].startswith(b"PAR1")
    merged = read_vault([tmp_path / "new.bin", tmp_path / "old.bin"], key)
    assert merged.rows() == [("p1", EXAMPLE_IDS[1], 1), ("p2", EXAMPLE_IDS[0], 1), ("p3", "07834110096", 9)]
    assert merged.schema == pl.Schema({"person_key": pl.String, "fid": pl.String, "id_type": pl.Int32})


def test_key_file_created_private_and_never_overwritten(tmp_path, monkeypatch):
    path = tmp_path / "cfg" / "keys.json"
    monkeypatch.setenv("KTT_KEY_FILE", str(path))
    with pytest.raises(MissingKeyError, match="ktt keys init"):
        load_keys()
    created_path, created = init_key_file()
    assert created and created_path == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = load_keys()
    _, created_again = init_key_file()
    assert not created_again and load_keys() == first
    assert len(first.pseudonym_key) == 32 and first.pseudonym_key != first.vault_key


def test_declared_type_outside_code_list_9032_is_refused():
    check = check_identifier(EXAMPLE_IDS[0], declared_type=11, allow_synthetic=True)
    assert check.rule_id == "code.unknown_value" and "9032" in check.message
    assert check_identifier("P1234567", declared_type=4, allow_synthetic=True).rule_id is None  # passport


def test_the_merged_vault_is_sorted_by_every_column(tmp_path):
    """A person key with several identifiers (a birth number, then a D number, ...) comes out in one order,
    whatever the order of the parts: the same parts merge to the same vault."""
    key = b"k" * 32
    fids = [birth_number(1 + n, 3, 50) for n in range(8)]  # synthetic (month + 80)
    parts = [pl.DataFrame({"person_key": [*["p1"] * 4, "p0"], "fid": [*fids[i::2][:4], "x"],
                           "id_type": [2, 1, 2, 1, 1]}, schema_overrides={"id_type": pl.Int32}) for i in (1, 0)]
    for i, part in enumerate(parts):
        write_vault_part(tmp_path / f"{i}.bin", part, key, "arrow")
    merged = read_vault([tmp_path / "0.bin", tmp_path / "1.bin"], key)
    assert merged.rows() == sorted(set(parts[0].rows()) | set(parts[1].rows()))
    assert read_vault([tmp_path / "1.bin", tmp_path / "0.bin"], key).equals(merged)
