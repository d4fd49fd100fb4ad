"""The markdown table, the targets check and the plot, all from one run's rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["markdown", "plot", "ray_markdown", "targets"]

# The local backend's rows; the Ray rows ("easytensor on Ray (...)") must not stand in for them.
_OURS = "easytensor ("
_RAY = "easytensor on Ray"


def _find(rows: list[dict[str, Any]], system: str, model: str) -> dict[str, Any] | None:
    for row in rows:
        if row["system"].startswith(system) and row["model"] == model:
            return row
    return None


def _cell(row: dict[str, Any], level: int, field: str, fmt: str) -> str:
    value = row.get(f"c{level}", {}).get(field)
    return "" if value is None else format(value, fmt)


def targets(
    rows: list[dict[str, Any]], extra: dict[str, Any]
) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target in the issue."""
    out: list[tuple[str, str, bool | None]] = []

    def rps(system: str, model: str, level: int) -> float | None:
        row = _find(rows, system, model)
        return None if row is None or f"c{level}" not in row else float(row[f"c{level}"]["rps"])

    ours = rps(_OURS, "tiny", 16)
    for system, need in (("HTTP floor", 0.5), ("plain FastAPI", 2.5), ("LitServe", 5.0)):
        other = rps(system, "tiny", 16)
        if ours is not None and other:
            ratio = ours / other
            out.append(
                (f"tiny, c16 throughput >= {need}x {system}", f"{ratio:.2f}x", ratio >= need)
            )
    floor_row, our_row = _find(rows, "HTTP floor", "tiny"), _find(rows, _OURS, "tiny")
    if floor_row and our_row:
        gap = our_row["c1"]["p50_ms"] - floor_row["c1"]["p50_ms"]
        out.append(("tiny, c1 p50 within 0.6 ms of the floor", f"+{gap:.2f} ms", gap <= 0.6))
    batched, plain = rps(_OURS, "cnn_batch", 32), rps(_OURS, "cnn", 32)
    if batched and plain:
        ratio = batched / plain
        p99 = _find(rows, _OURS, "cnn_batch")["c32"]["p99_ms"]  # type: ignore[index]
        out.append(
            ("CNN batch, c32 >= 2.5x unbatched", f"{ratio:.2f}x (p99 {p99:.1f} ms)", ratio >= 2.5)
        )
    lit = rps("LitServe", "cnn_batch", 32)
    if batched and lit:
        out.append(
            ("CNN batch, c32 ahead of LitServe batching", f"{batched / lit:.2f}x", batched > lit)
        )
    upload = extra.get("upload")
    if upload:
        ratio = upload.get("ratio", upload["upload_s"] / upload["cp_sync_s"])
        out.append(("1 GiB upload <= 1.5x cp + sync", f"{ratio:.2f}x", ratio <= 1.5))
        if "sha256_s" in upload:
            floor = upload.get("hash_ratio", upload["sha256_s"] / upload["cp_sync_s"])
            out.append(("  sha256 of the file alone, against cp + sync", f"{floor:.2f}x", None))
        grew = (upload["server_rss_peak"] - upload["server_rss_before"]) / 2**20
        out.append(("server RSS grows < 100 MB during upload", f"{grew:.0f} MB", grew < 100))
    cold = extra.get("cold")
    if cold:
        over = (cold["served_s"] - cold["in_process_s"]) * 1000
        out.append(("cold start <= in-process + 300 ms", f"+{over:.0f} ms", over <= 300))
    return out


_RAY_SETUP = (
    "Ray rows: `--backend ray` on two raylets on this same machine (2 CPUs each in Ray's "
    "books), `--ray-replica-cpus 1`, one replica per node."
)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| model | system | c1 p50 | c1 p99 | c8 req/s | c8 p99 | c16 req/s | c16 p99 "
        "| c32 req/s | c32 p99 | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        errors = sum(v.get("errors", 0) for k, v in row.items() if k.startswith("c"))
        cells = [
            row["model"],
            row["system"],
            _cell(row, 1, "p50_ms", ".2f"),
            _cell(row, 1, "p99_ms", ".2f"),
        ]
        for level in (8, 16, 32):
            cells += [_cell(row, level, "rps", ",.0f"), _cell(row, level, "p99_ms", ".1f")]
        cells.append(str(errors))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _header(rows: list[dict[str, Any]], extra: dict[str, Any]) -> str:
    text = (
        f"Loopback, wrk (1 thread), {extra['seconds']:g} s per level; "
        f"easytensor with --workers {extra['workers']}. Throughput in req/s, latency in ms."
    )
    if any(r["system"].startswith(_RAY) for r in rows):
        text += " " + _RAY_SETUP
    return text


def markdown(rows: list[dict[str, Any]], extra: dict[str, Any]) -> str:
    lines = [_header(rows, extra), "", *_table(rows)]
    cold = extra.get("cold")
    if cold:
        lines += [
            "",
            f"Cold start (CNN, upload to first answer): {cold['served_s'] * 1000:.0f} ms; "
            f"build + load + first call in-process: {cold['in_process_s'] * 1000:.0f} ms.",
        ]
    upload = extra.get("upload")
    if upload:
        mb = 2**20
        lines += [
            "",
            f"Upload of a {upload['bytes'] / 2**30:.2f} GiB state_dict: {upload['upload_s']:.2f} s "
            f"(cp: {upload['cp_s']:.2f} s, cp + sync: {upload['cp_sync_s']:.2f} s, sha256 of "
            f"the file: {upload.get('sha256_s', float('nan')):.2f} s); server RSS "
            f"{upload['server_rss_before'] / mb:.0f} -> {upload['server_rss_peak'] / mb:.0f} MB peak; "
            f"client peak RSS {upload['client_peak_rss'] / mb:.0f} MB.",
        ]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for name, measured, met in targets(rows, extra):
        shown = "" if met is None else ("yes" if met else "no")
        lines.append(f"| {name} | {measured} | {shown} |")
    return "\n".join(lines) + "\n"


def ray_markdown(rows: list[dict[str, Any]], extra: dict[str, Any]) -> str:
    """The local-vs-Ray table, and the ratios the choice between them turns on."""
    lines = [_header(rows, extra), "", *_table(rows), ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        local = _find(rows, _OURS, model)
        one = _find(rows, f"{_RAY} (1 ", model)
        two = _find(rows, f"{_RAY} (2 ", model)
        parts = []
        for level in (16, 32):
            if one and two:
                ratio = two[f"c{level}"]["rps"] / one[f"c{level}"]["rps"]
                parts.append(f"2 vs 1 replica at c{level}: {ratio:.2f}x")
            if local and one:
                ratio = one[f"c{level}"]["rps"] / local[f"c{level}"]["rps"]
                parts.append(f"Ray (1 replica) vs local at c{level}: {ratio:.2f}x")
        if local and one:
            gap = one["c1"]["p50_ms"] - local["c1"]["p50_ms"]
            parts.append(f"c1 p50 Ray (1 replica) - local: {gap:+.2f} ms")
        if parts:
            lines.append(f"- {model}: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 9), squeeze=False)
    for col, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model and "c32" in r]
        names = [r["system"] for r in mine]
        for level, offset in ((8, -0.27), (16, 0.0), (32, 0.27)):
            values = [r[f"c{level}"]["rps"] for r in mine]
            axes[0][col].bar(
                [i + offset for i in range(len(mine))], values, 0.27, label=f"c={level}"
            )
            p99 = [r[f"c{level}"]["p99_ms"] for r in mine]
            axes[1][col].bar([i + offset for i in range(len(mine))], p99, 0.27, label=f"c={level}")
        for row_i, title in ((0, "throughput (req/s)"), (1, "p99 latency (ms)")):
            ax = axes[row_i][col]
            ax.set_title(f"{model}: {title}")
            ax.set_xticks(range(len(mine)))
            ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
