"""Charts of collected results: mAP (and FPS) per run, and loss and mAP per epoch. matplotlib
is imported only here (extra `plot`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from detk8s.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from detk8s.frameworks.base import Curves

MAP_COLOUR, FPS_COLOUR = "#4C72B0", "#DD8452"
VISIBLE = 0.02  # the least bar height, as a share of the axis: a 0.00 bar still shows
LOG_SCALE_OVER = 50  # losses this far apart (different trainers) are drawn on a log axis


def plot_map(rows: list[dict[str, Any]]) -> bytes:
    """mAP per run as PNG, with FPS beside it on its own axis when runs measured it."""
    done = [r for r in rows if r["mAP"] is not None]
    if not done:
        raise UsageError("--plot: no run has an mAP yet")
    plt = _pyplot("--plot")
    x = list(range(len(done)))
    has_fps = any(r["FPS"] is not None for r in done)
    width = 0.4 if has_fps else 0.6
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(done) + 2), 4), dpi=120)
    maps = [float(r["mAP"]) for r in done]
    offset = -width / 2 if has_fps else 0.0
    handles = [_bars(ax, [i + offset for i in x], maps, width, MAP_COLOUR, "mAP@0.5 (%)", "%.2f",
                     top=min(105.0, max(maps) * 1.25) if max(maps) > 0 else 1.0)]  # fmt: skip
    ax.set_ylabel("mAP@0.5 (%)")
    ax.set_xticks(x, [r["run"] for r in done], rotation=30 if len(done) > 6 else 0)
    if has_fps:  # FPS is another quantity: its own axis, bars beside mAP's
        fps = [r["FPS"] for r in done]
        known = [float(v) for v in fps if v is not None]
        handles.append(_bars(ax.twinx(), [i + width / 2 for i in x], fps, width, FPS_COLOUR,
                             "FPS", "%.1f", top=max(max(known) * 1.25, 1.0)))  # fmt: skip
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    ax.set_title("detk8s: mAP per run")
    return _png(fig)


def plot_curves(curves: dict[str, Curves]) -> bytes:
    """Training loss and validation mAP per epoch, one line per run, as PNG."""
    if not curves:
        raise UsageError("--curves: no run has a training log with progress yet")
    plt = _pyplot("--curves")
    fig, (loss_ax, map_ax) = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    for run, c in curves.items():  # clip_on=False: a point at 0 sits on the axis, visible
        loss_ax.plot(list(c.loss), list(c.loss.values()), marker=".", label=run, clip_on=False)
        if c.map50:
            map_ax.plot(list(c.map50), list(c.map50.values()), marker="o", label=run,
                        clip_on=False)  # fmt: skip
    loss_ax.set(title="training loss (mean per epoch)", xlabel="epoch", ylabel="loss")
    losses = [v for c in curves.values() for v in c.loss.values() if v > 0]
    if losses and max(losses) > LOG_SCALE_OVER * min(losses):  # trainers' losses differ in scale
        loss_ax.set_yscale("log")
    map_ax.set(title="mAP@0.5 on the val list", xlabel="epoch", ylabel="mAP@0.5 (%)")
    map_ax.set_ylim(bottom=0)
    for ax in (loss_ax, map_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if not map_ax.lines:
        map_ax.text(0.5, 0.5, "no evaluation while training", ha="center",
                    transform=map_ax.transAxes)  # fmt: skip
    fig.suptitle("detk8s: training curves")
    return _png(fig)


def _bars(
    ax: Axes, x: list[float], values: Sequence[float | None], width: float, colour: str,
    label: str, fmt: str, top: float,
) -> Any:  # fmt: skip
    """Bars of at least VISIBLE of the axis, each labelled with its true value (n/a: none)."""
    ax.set_ylim(0, top)
    bars = ax.bar(x, visible_heights(values, top), width, color=colour, label=label)
    ax.bar_label(bars, [fmt % v if v is not None else "n/a" for v in values], fontsize=8)
    return bars


def visible_heights(values: Sequence[float | None], top: float) -> list[float]:
    """Bar heights on an axis from 0 to `top`: the values, but none thinner than VISIBLE."""
    return [max(v or 0.0, top * VISIBLE) for v in values]


def _pyplot(option: str) -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(f"{option} needs matplotlib: pip install 'detk8s[plot]'") from None
    return plt


def _png(fig: Figure) -> bytes:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    return png.getvalue()
