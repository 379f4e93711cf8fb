"""The portable int8 gate on AVX2-only kernels (issue 13): the test checkpoint's default int8 repository scored under
`qemu-x86_64 -cpu Haswell` (AVX2, no AVX-512) and natively; seqguard/export/isa_check.py says how and why."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from tests.test_export import exported, trained_checkpoint

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="AVX2 emulation of an x86-64 python")


def test_portable_int8_gate_holds_on_avx2_kernels(tmp_path_factory: pytest.TempPathFactory) -> None:
    from seqguard.export.isa_check import EmulatorUnsupported, qemu_path, run_check

    if qemu_path() is None:
        pytest.skip("qemu-x86_64 not installed (make setup installs qemu-user where apt-get exists)")
    repo, _ = exported(tmp_path_factory, "cpu", "int8")
    ckpt = trained_checkpoint(tmp_path_factory)
    try:
        # Gate failures raise ParityError (either ISA); a child that still sees AVX-512 raises IsaCheckError.
        report = run_check(ckpt, repo, control="avx512_vnni", timeout_s=600, log=lambda _: None)
    except EmulatorUnsupported as e:
        pytest.skip(str(e))
    native, emulated = report.features["native"], report.features["emulated Haswell"]
    assert emulated["AVX2"] and not emulated["AVX512F"] and not emulated["AVX512VNNI"]
    for isa, gates in report.gates.items():
        for model, g in gates.items():
            assert g["decision_agreement"] >= 0.99, (isa, model, g)
            assert g["roc_auc_drop"] is None or g["roc_auc_drop"] <= 0.005, (isa, model, g)
    # The integer products are exact on both ISAs; only float parts (dequantisation, GELU, softmax, GRU) may differ
    # in the last bits.
    assert all(d["int8"] <= 1e-5 for d in report.across.values()), report.across
    assert report.ensemble["same_decision"] == 1.0 and report.ensemble["max_abs_score_diff"] <= 1e-5
    if native["AVX512VNNI"]:
        # Positive control: the same BERT with 8-bit s8 weights (Optimum's avx512_vnni preset) does saturate in
        # AVX2's int16 pairs, so the harness sees a difference there: it really ran the AVX2 kernel.
        bert = report.control["max_abs_logit_diff_between_isas"]
        assert bert > 10 * max(report.across[report.control["model"]]["int8"], 1e-6), report.control


def test_no_emulator_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import numpy as np

    import seqguard.export.isa_check as isa

    monkeypatch.setattr(isa, "qemu_path", lambda: None)
    inputs = {k: np.zeros((2, 4), np.int64) for k in isa.INPUTS}
    with pytest.raises(isa.EmulatorUnsupported, match="apt-get install -y qemu-user"):
        isa.score_files({}, inputs, [(0, 2)], tmp_path, emulate="Haswell")
