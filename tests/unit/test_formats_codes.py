"""The code shapes (workers.formats.codes), through both engines that use them: RE2 (pyarrow, the claims CSV
reader, which upper-cases first) and Python's re (the FHIR reader)."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from workers.formats.codes import CPT_HCPCS_PATTERN, ICD10_CM, ICD10_CM_PATTERN

ICD10_GOOD = ["I10", "E11.9", "E119", "S72.001A", "S72001A", "U07.1", "Z00.00", "O9A.119", "C4A.0", "D3A.010"]
ICD10_BAD = [
    "",
    "I1",  # too short
    "1E11",  # a digit first
    "EA1",  # a letter second
    "E1C",  # third: a digit, A or B only
    "E11.",  # a dot needs one to four characters after it
    "E11-9",  # only a dot
    "E11..9",
    "E11.12345",  # at most four after the category
    "XE11.9",  # anchored at both ends
    "E11.9 ",
    "e11.9",  # upper case only
]
CPT_GOOD = ["99213", "00100", "0001F", "0042T", "J1100", "A0425", "V2020"]
CPT_BAD = [
    "",
    "9921",
    "992134",
    "0001A",  # Category II ends in F, III in T, nothing else
    "0001G",
    "W1234",  # HCPCS Level II: A to V
    "J110",
    "J11000",
    "X99213",  # anchored at both ends
    "99213X",
    "j1100",  # upper case only
]


def re2(pattern: str, codes: list[str]) -> list[bool]:
    return pc.match_substring_regex(pa.array(codes, pa.string()), pattern).to_pylist()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [(ICD10_CM_PATTERN, ICD10_GOOD, ICD10_BAD), (CPT_HCPCS_PATTERN, CPT_GOOD, CPT_BAD)],
    ids=["icd10-cm", "cpt-hcpcs"],
)
def test_the_same_codes_pass_in_re2_and_python(pattern: str, good: list[str], bad: list[str]) -> None:
    assert re2(pattern, good + bad) == [True] * len(good) + [False] * len(bad)
    assert [bool(re.fullmatch(pattern, code)) for code in good + bad] == [True] * len(good) + [False] * len(bad)


def test_the_compiled_icd10_pattern_is_the_same_shape() -> None:
    assert [bool(ICD10_CM.fullmatch(code)) for code in ICD10_GOOD] == [True] * len(ICD10_GOOD)
    assert [bool(ICD10_CM.fullmatch(code)) for code in ICD10_BAD] == [False] * len(ICD10_BAD)
