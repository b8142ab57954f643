"""One PNG of a `servingkit bench all` report: per section, the kit against every peer and floor.

Bars are CPU-time minima of the interleaved runs, a tick marks the median, the wall-time minimum is a hollow
bar behind; every panel is on its own scale (its unit in the title). Drawn with matplotlib's Agg backend (no
display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KIT = "#1f77b4"
OTHER = "#a0a0a0"


def _bars(report: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, dict[str, Any], bool]]]]:
    """(title, unit, [(label, summary, is_kit)]) per panel, from the report's sections."""
    sections = report["sections"]
    panels: list[tuple[str, str, list[tuple[str, dict[str, Any], bool]]]] = []
    stream = sections.get("stream", {})
    for n, entry in stream.get("sizes", {}).items():
        panels.append((f"stream, {n} records (ms)", "ms",
                       [("kit handler", entry["kit"], True), ("floor", entry["floor"], False)]))  # fmt: skip
    if "peers" in stream:
        p = stream["peers"]
        panels.append((f"stream, {p['records']} records, per-record peers (ms)", "ms",
                       [("kit handler", p["kit"], True), ("tutorial loop", p["tutorial"], False),
                        ("Powertools BatchProcessor", p["powertools"], False)]))  # fmt: skip
    cold = sections.get("coldstart", {})
    if "kit" in cold:
        rows = [("kit (S3, first batch)", cold["kit"], True), ("import + load floor", cold["floor"], False)]
        container = cold.get("container", {})
        if "image" in container:
            rows += [("image (container)", _seconds(container["image"]), True),
                     ("floor in the image", _seconds(container["floor"]), False)]  # fmt: skip
        panels.append(("cold start (s)", "s", rows))
    api = sections.get("api", {}).get("configurations", {})
    if api:
        rows = [(name, _per_request(c), name.startswith(("kit", "in-process"))) for name, c in api.items()]
        panels.append(("single-row API: server CPU per request (ms)", "ms", rows))
    batch = sections.get("batch", {})
    names = [n for n in ("floor", "local", "mlflow", "spark", "spark_udf") if n in batch]
    if names:
        labels = {"floor": "pandas floor", "local": "kit local engine", "mlflow": "mlflow models predict",
                  "spark": "kit Spark engine", "spark_udf": "mlflow spark_udf"}  # fmt: skip
        panels.append((f"batch, {batch['rows']:,} rows (s)", "s",
                       [(labels[n], batch[n], n in ("local", "spark")) for n in names]))  # fmt: skip
    single = sections.get("single_row", {}).get("per_call_ms", {})
    if single:
        panels.append(("one row, per call (ms)", "ms",
                       [(n, s, "fast path" in n or n == "api_handler") for n, s in single.items()]))  # fmt: skip
    return panels


def _seconds(entry: dict[str, Any]) -> dict[str, Any]:
    """The image bench's {cpu_min, cpu_median, wall_min, wall_median} (seconds) as a summary."""
    return {k: entry[k] for k in ("cpu_min", "cpu_median", "wall_min", "wall_median")}


def _per_request(c: dict[str, Any]) -> dict[str, Any]:
    """An API configuration as a summary: CPU per request; p50 latency stands in for wall."""
    return {"cpu_min": c["cpu_ms_per_request"][0], "cpu_median": c["cpu_ms_per_request"][1],
            "wall_min": c["p50_ms"][0], "wall_median": c["p50_ms"][1]}  # fmt: skip


def draw(report: dict[str, Any], path: Path) -> Path:
    """Write the chart of `report` to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _bars(report) or [("no figures", "", [])]
    heights = [max(1, len(p[2])) + 1 for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 0.4 * sum(heights) + 0.8),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)  # fmt: skip
    for ax, (title, _unit, rows) in zip(axes[:, 0], panels, strict=True):
        labels = [r[0] for r in rows]
        y = list(range(len(rows)))
        walls = [r[1]["wall_min"] for r in rows]
        cpus = [r[1]["cpu_min"] for r in rows]
        medians = [r[1]["cpu_median"] for r in rows]
        ax.barh(y, walls, color="none", edgecolor="#606060", linestyle=":", label="wall min (API: p50 min)")
        ax.barh(y, cpus, color=[KIT if r[2] else OTHER for r in rows], label="CPU min")
        ax.scatter(medians, y, marker="|", color="black", s=120, zorder=3, label="CPU median")
        for yi, c in zip(y, cpus, strict=True):
            ax.text(c, yi, f" {c:.3g}", va="center", fontsize=7)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    m = report.get("machine", {})
    fig.suptitle(f"servingkit bench all: {m.get('cpus')} CPUs (shared), load {m.get('load_average')}, "
                 f"repeats {report.get('repeats')}{', quick' if report.get('quick') else ''}", fontsize=9)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
