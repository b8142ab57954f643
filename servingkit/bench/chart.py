"""One PNG of a `servingkit bench all` report: per section, the kit against every peer and floor.

Bars are CPU-time minima of the interleaved runs, a tick marks the median, the wall-time minimum is a hollow
bar behind; every panel is on its own scale (its unit in the title). Drawn with matplotlib's Agg backend (no
display needed). `merge` combines the reports of several runs (one section re-run later, say) into one, each
section naming the run it comes from, and the chart says so in its panel titles: never mixed silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KIT = "#1f77b4"
OTHER = "#a0a0a0"


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report of several runs: a section of a later report replaces the earlier one's; `sources` names the run
    (its `created` time and load average) each section comes from, and `targets` are those of the kept sections."""
    if not reports:
        raise ValueError("no reports to merge")
    merged: dict[str, Any] = {k: v for k, v in reports[-1].items() if k not in ("sections", "targets")}
    merged["sections"], merged["sources"], targets = {}, {}, {}
    for report in reports:
        source = {"created": report.get("created"), "load_average": report.get("machine", {}).get("load_average"),
                  "repeats": report.get("repeats")}  # fmt: skip
        for name, figures in report.get("sections", {}).items():
            merged["sections"][name] = figures
            merged["sources"][name] = source
            targets[name] = _section_targets(figures)
    merged["targets"] = [t for name in merged["sections"] for t in targets[name]]
    merged["repeats"] = sorted({s["repeats"] for s in merged["sources"].values()}, key=str)
    return merged


def _section_targets(value: Any) -> list[dict[str, Any]]:
    """Every target (as written in the JSON) inside one section's figures."""
    if isinstance(value, dict):
        if {"name", "ratio", "limit", "met"} <= set(value):
            return [value]
        return [t for v in value.values() for t in _section_targets(v)]
    if isinstance(value, list):
        return [t for v in value for t in _section_targets(v)]
    return []


def _bars(report: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, dict[str, Any], bool]]]]:
    """(title, unit, [(label, summary, is_kit)]) per panel, from the report's sections; with `sources` (a merged
    report) each title names the run its figures come from."""
    panels = _panels(report["sections"])
    sources = report.get("sources")
    if not sources:
        return [(title, unit, rows) for _, title, unit, rows in panels]
    return [(f"{title}  [run {_when(sources[section])}]", unit, rows) for section, title, unit, rows in panels]


def _when(source: dict[str, Any]) -> str:
    created = str(source.get("created") or "?").replace("T", " ")[:16]
    return f"{created} UTC, load {source.get('load_average', ['?'])[0]}"


def _panels(sections: dict[str, Any]) -> list[tuple[str, str, str, list[tuple[str, dict[str, Any], bool]]]]:
    """(section, title, unit, rows) per panel."""
    panels: list[tuple[str, str, str, list[tuple[str, dict[str, Any], bool]]]] = []
    stream = sections.get("stream", {})
    for n, entry in stream.get("sizes", {}).items():
        rows = [("kit handler", entry["kit"], True), ("floor", entry["floor"], False)]
        if "floor_prepared" in entry:  # the former floor, beside the floor since 2026-12-01 (s2)
            rows.append(("former floor (prepared rows)", entry["floor_prepared"], False))
        panels.append(("stream", f"stream, {n} records (ms)", "ms", rows))
    if "peers" in stream:
        p = stream["peers"]
        panels.append(("stream", f"stream, {p['records']} records, per-record peers (ms)", "ms",
                       [("kit handler", p["kit"], True), ("tutorial loop", p["tutorial"], False),
                        ("Powertools BatchProcessor", p["powertools"], False)]))  # fmt: skip
    cold = sections.get("coldstart", {})
    if "kit" in cold:
        rows = [("kit (S3, first batch)", cold["kit"], True), ("import + load floor", cold["floor"], False)]
        container = cold.get("container", {})
        if "image" in container:
            rows += [("image (container)", _seconds(container["image"]), True),
                     ("floor in the image", _seconds(container["floor"]), False)]  # fmt: skip
        panels.append(("coldstart", "cold start (s)", "s", rows))
    api = sections.get("api", {}).get("configurations", {})
    if api:
        rows = [(name, _per_request(c), name.startswith(("kit", "in-process"))) for name, c in api.items()]
        panels.append(("api", "single-row API: server CPU per request (ms)", "ms", rows))
    batch = sections.get("batch", {})
    names = [n for n in ("floor", "local", "mlflow", "spark", "spark_udf") if n in batch]
    if names:
        labels = {"floor": "pandas floor", "local": "kit local engine", "mlflow": "mlflow models predict",
                  "spark": "kit Spark engine", "spark_udf": "mlflow spark_udf"}  # fmt: skip
        panels.append(("batch", f"batch, {batch['rows']:,} rows (s)", "s",
                       [(labels[n], batch[n], n in ("local", "spark")) for n in names]))  # fmt: skip
    single = sections.get("single_row", {}).get("per_call_ms", {})
    if single:
        panels.append(("single_row", "one row, per call (ms)", "ms",
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
        widest = max([*walls, *cpus, *medians], default=0.0)
        for yi, c, med in zip(y, cpus, medians, strict=True):
            if c >= 0.2 * widest:  # inside its bar's end: beside it, the median's tick would cover it
                ax.text(c, yi, f"{c:.3g} ", va="center", ha="right", fontsize=7, color="white")
            else:  # a bar too short to hold it: beyond the median's tick
                ax.text(max(c, med), yi, f"  {c:.3g}", va="center", fontsize=7)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    m = report.get("machine", {})
    if report.get("sources"):
        runs = len({str(x) for x in report["sources"].values()})
        title = f"servingkit bench: {m.get('cpus')} CPUs (shared); sections from {runs} runs (each panel names its run)"
    else:
        title = (f"servingkit bench all: {m.get('cpus')} CPUs (shared), load {m.get('load_average')}, "
                 f"repeats {report.get('repeats')}{', quick' if report.get('quick') else ''}")  # fmt: skip
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
