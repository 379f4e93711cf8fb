"""The benchmark harness end to end on a toy model (`python -m bench.run --smoke`): structure and sanity of what it
writes, never its timings (figures on a shared 2-core machine are not something a test can assert)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--no-publish", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "latest.json").read_text()), out


def _positive(row: dict[str, Any], *keys: str) -> None:
    for k in keys:
        assert isinstance(row[k], float | int) and row[k] > 0, (k, row)


def test_smoke_writes_json_plot_and_tables(smoke: tuple[dict[str, Any], Path]) -> None:
    res, out = smoke
    assert res["schema"] == "seqguard-bench-v1" and res["smoke"] is True
    assert not res["errors"]
    assert (out / "latest.png").stat().st_size > 1000
    assert "### Targets" in (out / "tables.md").read_text()
    assert list(out.glob("bench-*.json"))
    assert not (out / "work").exists()  # ONNX files and repository copies are cleaned up
    m = res["machine"]
    assert m["cpu_model"] and m["logical_cpus"] >= 1 and set(m["simd"]) >= {"avx2", "avx512f", "avx512_vnni"}
    assert m["versions"]["onnxruntime"] and m["versions"]["torch"]
    assert len(res["load_average"]["start"]) == 3


def test_smoke_model_level_figures(smoke: tuple[dict[str, Any], Path]) -> None:
    res, _ = smoke
    assert res["peak"]["fp32_peak_gflops"] > 0
    bert = res["models"]["behaviour_bert"]
    assert bert["flops_per_sequence"]["total"] > 0 and bert["config"]["layers"] >= 1
    assert set(bert["batches"]) == {"1", "4"}
    assert all(r["mean"] > 0 and r["n"] >= 6 for r in bert["roof_gflops"].values())  # the same-round GEMM roof
    expected = {"torch_fp32", "ort_fp32", "ort_fp32_fused", "ort_int8_dynamic", "ort_int8_dynamic_fused",
                "ort_int8_static"}
    for rows in bert["batches"].values():
        assert set(rows) == expected
        for row in rows.values():
            _positive(row, "throughput_per_s", "p50_ms", "p99_ms", "mean_ms", "gflops", "speedup_vs_torch",
                      "roof_fraction", "peak_fraction")
            assert row["n"] >= 6 and row["p99_ms"] >= row["p50_ms"] > 0
    for name, v in bert["variants"].items():
        assert v["error"] is None, name
        if name.startswith("ort_int8"):
            assert sum(v["quantization"]["quantized_ops"].values()) > 0, name  # int8 really is in the graph
    assert res["accuracy"]["meaningful"] is False and "not trained" in res["accuracy"]["reason"]


def test_smoke_system_level_and_targets(smoke: tuple[dict[str, Any], Path]) -> None:
    res, _ = smoke
    system = res["system"]
    assert system["windows"] > 0 and system["tokenizer_matches_encoder"] is True
    for key in ("seeds", "eager_bucketed", "seqguard"):
        _positive(system["pipelines"][key], "sequences_per_s", "speedup_vs_seeds")
    assert system["flops"]["padding_waste_factor"] >= 1.0
    assert system["agreement_seqguard_vs_seeds"]["max_abs_logit_diff"] >= 0
    keys = {t["key"] for t in res["targets"]}
    assert {"system_vs_seeds", "service_overhead_p50", "triton_dynamic_batching_scaling"} <= keys
    for t in res["targets"]:
        assert t["status"] in ("met", "missed", "not measured")
        assert (t["measured"] is None) == (t["status"] == "not measured")
    # Levels that did not run are reported as not measured, never as met.
    by_key = {t["key"]: t for t in res["targets"]}
    assert by_key["triton_dynamic_batching_scaling"]["status"] == "not measured"


def test_strip_dynamic_batching_keeps_the_rest() -> None:
    from bench.repo import strip_dynamic_batching
    from seqguard.export.triton_repo import ServingSettings, python_model_config, render, validate_config

    text = render(python_model_config("behaviour_bert", ServingSettings(target="cpu", precision="fp32")))
    assert validate_config(text).HasField("dynamic_batching")
    stripped = validate_config(strip_dynamic_batching(text))
    assert not stripped.HasField("dynamic_batching")
    assert stripped.max_batch_size == 64 and stripped.backend == "python" and len(stripped.instance_group) == 1


def test_bert_flops_formula() -> None:
    from types import SimpleNamespace

    from bench.flops import bert_flops

    cfg = SimpleNamespace(hidden_size=4, intermediate_size=8, num_hidden_layers=2, num_labels=2)
    f = bert_flops(cfg, seq_len=3)
    per_layer = 4 * 3 * 16 * 2 + 2 * 9 * 4 * 2 + 2 * 3 * 4 * 8 * 2
    assert f["per_layer"] == per_layer
    assert f["total"] == 2 * per_layer + 16 * 2 + 4 * 2 * 2


def test_row_cost_measures_every_component_at_every_cell(tiny_repo: Path) -> None:
    from bench.row_cost import measure, table
    from seqguard.manifest import Manifest

    res = measure(tiny_repo, [16, 32], [1, 4], budget_s=0.01)
    assert set(res) == {c.name for c in Manifest.load(tiny_repo).components}
    for cells in res.values():
        assert set(cells) == {"L16", "L32"} and all(set(b) == {"B1", "B4"} for b in cells.values())
        for b in cells.values():
            assert b["B4"]["row_ms"] == pytest.approx(b["B4"]["call_ms"] / 4, rel=1e-3)
            assert all(c["call_ms"] > 0 for c in b.values())
    assert table(res).count("\n") == 1 + 2 * 2  # header, rule, one line per length x batch
