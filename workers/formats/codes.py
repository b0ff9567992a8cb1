"""Shapes of the clinical and billing codes the batch feeds carry (pure; RE2/Python regex compatible).

- ICD-10-CM (``dx_code`` of claims, ``primary_dx`` when the coding system says ICD-10): a letter (not U),
  two characters (digit, digit or A/B), then optionally a dot and one to four characters; the dot may be
  left out (``E11.9`` and ``E119`` are both accepted; 837 files write codes without it). U07.1 etc.
  (emergency use codes) are accepted.
- CPT (5 digits; Category II ``dddd F`` and III ``dddd T``) and HCPCS Level II (a letter A-V then 4 digits)
  for ``procedure_code``.
"""

from __future__ import annotations

import re

__all__ = ["CPT_HCPCS_PATTERN", "ICD10_CM", "ICD10_CM_PATTERN"]

ICD10_CM_PATTERN = r"^[A-Z][0-9][0-9AB](\.?[0-9A-Z]{1,4})?$"
ICD10_CM = re.compile(ICD10_CM_PATTERN[1:-1])
CPT_HCPCS_PATTERN = r"^([0-9]{4}[0-9FT]|[A-V][0-9]{4})$"
