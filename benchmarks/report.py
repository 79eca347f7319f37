"""Write the benchmark results as a Markdown table, JSON and a PNG plot."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any


def write_report(rows: list[dict[str, Any]], folder: Path) -> None:
    """Write results.md, results.json and results.png into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# Benchmark results",
        "",
        f"Python {platform.python_version()} on {platform.machine()}, "
        "medians over fresh processes; ratio = µs per job / the nursery + "
        "CapacityLimiter idiom's µs per job in the same case.",
        "",
    ]
    cases = sorted(
        {(r["job"], r["jobs"], r["workers"]) for r in rows},
        key=lambda c: (c[0] != "noop", c[0], c[1], c[2]),
    )
    for job, n, workers in cases:
        lines += [
            f"## {n:,} {job} jobs, {workers} workers",
            "",
            "| implementation | µs/job | × idiom | peak RSS (MiB) |",
            "| --- | ---: | ---: | ---: |",
        ]
        chosen = [
            r for r in rows if (r["job"], r["jobs"], r["workers"]) == (job, n, workers)
        ]
        for r in sorted(chosen, key=lambda r: r["us_per_job"]):
            lines.append(
                f"| {r['implementation']} | {r['us_per_job']:.2f} |"
                f" {r['ratio_to_idiom']:.2f} | {r['peak_rss_mib']:.1f} |"
            )
        lines.append("")
    (folder / "results.md").write_text("\n".join(lines))
    _plot(rows, folder / "results.png")


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in rows if r["job"] == "noop" and r["workers"] == 64]
    names = sorted({r["implementation"] for r in chosen})
    sizes = sorted({r["jobs"] for r in chosen})
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    colors = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]
    for index, name in enumerate(names):
        points = sorted(
            (r["jobs"], r["us_per_job"], r["peak_rss_mib"])
            for r in chosen
            if r["implementation"] == name
        )
        style = "-o" if name.startswith("trio_pool") else "--."
        color = colors[index % len(colors)]
        xs = [p[0] for p in points]
        left.plot(xs, [p[1] for p in points], style, label=name, color=color)
        right.plot(xs, [p[2] for p in points], style, label=name, color=color)
    for axes, label in ((left, "µs per job"), (right, "peak RSS (MiB)")):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(sizes)
        axes.set_xlabel("no-op jobs (64 workers)")
        axes.set_ylabel(label)
        axes.grid(True, which="both", alpha=0.3)
    left.set_title("Cost per job")
    right.set_title("Peak memory")
    right.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":  # redraw the report from results.json
    folder = Path(__file__).parent / "results"
    write_report(json.loads((folder / "results.json").read_text()), folder)
