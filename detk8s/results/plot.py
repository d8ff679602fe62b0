"""A bar chart of mAP (and FPS) per run. matplotlib is imported only here (extra `plot`)."""

from __future__ import annotations

import io
from typing import Any

from detk8s.errors import UsageError


def plot_map(rows: list[dict[str, Any]]) -> bytes:
    """The chart as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'detk8s[plot]'") from None
    done = [r for r in rows if r["mAP"] is not None]
    if not done:
        raise UsageError("--plot: no run has an mAP yet")
    x = list(range(len(done)))
    has_fps = any(r["FPS"] is not None for r in done)
    width = 0.4 if has_fps else 0.6
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(done) + 2), 4), dpi=120)
    offset = -width / 2 if has_fps else 0.0
    bars = ax.bar([i + offset for i in x], [r["mAP"] for r in done], width, color="#4C72B0",
                  label="mAP@0.5 (%)")  # fmt: skip
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_ylabel("mAP@0.5 (%)")
    ax.set_ylim(0, 105)
    ax.set_xticks(x, [r["run"] for r in done], rotation=30 if len(done) > 6 else 0)
    handles = [bars]
    if has_fps:  # FPS is another quantity: its own axis, bars beside mAP's
        ax2 = ax.twinx()
        fps_bars = ax2.bar([i + width / 2 for i in x], [r["FPS"] or 0 for r in done], width,
                           color="#DD8452", label="FPS")  # fmt: skip
        ax2.bar_label(fps_bars, fmt="%.1f", fontsize=8)
        ax2.set_ylabel("FPS")
        handles.append(fps_bars)
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    ax.set_title("detk8s: mAP per run")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    return png.getvalue()
