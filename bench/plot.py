"""One PNG: throughput by variant and batch for each model, the system-level ladder, and Triton's scaling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.variants import LABELS, ORDER


def _model_panel(ax: Any, model: dict[str, Any], title: str) -> None:
    batches = list(model.get("batches", {}))
    variants = [v for v in ORDER if any(v in model["batches"][b] for b in batches)]
    width = 0.8 / max(1, len(variants))
    for j, v in enumerate(variants):
        xs = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(batches))]
        ys = [model["batches"][b].get(v, {}).get("throughput_per_s", 0) for b in batches]
        ax.bar(xs, ys, width, label=LABELS.get(v, v))
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_yscale("log")
    ax.set_ylabel("sequences / s (log)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3, which="both")


def _system_panel(ax: Any, system: dict[str, Any]) -> None:
    rows = system.get("pipelines", {})
    names = list(rows)
    ax.barh(range(len(names)), [rows[n]["sequences_per_s"] for n in names],
            color=["#999999" if n == "seeds" else ("#2a7" if n == "seqguard" else "#79b") for n in names])
    ax.set_yticks(range(len(names)), [f"{n} (x{rows[n]['speedup_vs_seeds']:.1f})" for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("sequences / s")
    ax.set_title(f"system level: {system.get('windows')} generator windows, batch {system.get('batch')}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def _triton_panel(ax: Any, triton: dict[str, Any]) -> None:
    for key, style in (("dynamic_batching", "o-"), ("no_dynamic_batching", "s--")):
        rows = {k: v for k, v in triton.get(key, {}).items() if k.startswith("c") and k[1:].isdigit()}
        cs = sorted(rows, key=lambda k: int(k[1:]))
        ax.plot([int(c[1:]) for c in cs], [rows[c]["throughput_per_s"] for c in cs], style,
                label=key.replace("_", " "))
    ax.set_xlabel("concurrent batch-1 requests")
    ax.set_ylabel("requests / s")
    ax.set_title("Triton (ensemble, python backend, CPU)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot(results: dict[str, Any], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Any]] = []
    for model in results.get("models", {}).values():
        if isinstance(model, dict) and model.get("batches"):
            panels.append(("model", (model, f"{model['label']} (seq {model['seq_len']}): throughput by variant")))
    if isinstance(results.get("system"), dict) and results["system"].get("pipelines"):
        panels.append(("system", results["system"]))
    if isinstance(results.get("triton"), dict) and results["triton"].get("dynamic_batching"):
        panels.append(("triton", results["triton"]))
    if not panels:
        return None
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.2 * rows), squeeze=False)
    for ax, (kind, data) in zip(axes.flat, panels, strict=False):
        if kind == "model":
            _model_panel(ax, *data)
        elif kind == "system":
            _system_panel(ax, data)
        else:
            _triton_panel(ax, data)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if panels[0][0] == "model":
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
    machine = results.get("machine", {})
    fig.suptitle(f"seqguard bench: {machine.get('cpu_model', '?')}, {machine.get('logical_cpus', '?')} CPUs, "
                 f"2 threads; {results.get('started_at', '')}", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
