"""The service's start-up check of the serving CPU against the int8 repository's recorded ISA assumptions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from export.quantize import isa_assumptions
from service.runtime import isa_warning


def manifest(flavor: str | None, precision: str = "int8", isa: dict | None = None) -> SimpleNamespace:
    quant = {"isa": isa} if isa is not None else {}
    return SimpleNamespace(export=SimpleNamespace(target="cpu", precision=precision, cpu_flavor=flavor,
                                                  quantization=quant))


@pytest.mark.parametrize(("flavor", "built_on", "serving", "expect"), [
    ("portable", "avx512_vnni", "avx512_vnni", None),
    ("portable", "avx512_vnni", "avx2", "scores match"),  # valid on both; the gate ran elsewhere: said, not alarmed
    ("avx512_vnni", "avx512_vnni", "avx2", "re-export with `--cpu-flavor portable`"),
    ("avx2", "avx2", "avx2", None),
])
def test_isa_warning(flavor: str, built_on: str, serving: str, expect: str | None,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("export.quantize.detect_cpu_flavor", lambda: built_on)
    warning = isa_warning(manifest(flavor, isa=isa_assumptions(flavor, "static")), serving)
    if expect is None:
        assert warning is None
    else:
        assert warning and expect in warning and serving in warning


def test_isa_warning_for_older_manifests_and_other_precisions() -> None:
    assert "re-export" in (isa_warning(manifest("avx512_vnni"), "avx2") or "")
    assert isa_warning(manifest("avx512_vnni"), "avx512_vnni") is None
    assert isa_warning(manifest(None, precision="fp32"), "avx2") is None
