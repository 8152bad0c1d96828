"""The report's charts as PNG (mail clients drop SVG; many drop data: URIs, so the email carries them as
inline attachments). matplotlib is imported here only, inside the functions, with the Agg backend: the
function app's cold start never pays for it (benchmarks/run.py startup)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from shared.models import ReportDay, ReportDomainLatency

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Charts are drawn at twice the size they are shown at, so they stay sharp on high-density screens.
WIDTH_PX: Final = 600
SCALE: Final = 2
DPI: Final = 100

VOLUME_COLOUR: Final = "#9cc3e6"
RATE_COLOUR: Final = "#1f5f99"
P50_COLOUR: Final = "#7fb77e"
P95_COLOUR: Final = "#e0a458"
GRID_COLOUR: Final = "#e3e6ea"
TEXT_COLOUR: Final = "#333333"
#: Latency axis ticks (seconds): round durations a reader knows.
DURATION_TICKS: Final = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 86400)


@dataclass(frozen=True)
class Chart:
    content_id: str
    title: str
    alt: str
    png: bytes
    width: int
    height: int


def _figure(height_px: int) -> Figure:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_PX * SCALE / DPI, height_px * SCALE / DPI), dpi=DPI)
    figure.patch.set_facecolor("white")
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No metadata: the same report gives the same bytes (the email's attachments compare equal on a rerun).
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _style(axes: Any) -> None:
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axes.spines[side].set_color("#b8bec6")
    axes.tick_params(colors=TEXT_COLOUR, labelsize=18)
    axes.grid(axis="y", color=GRID_COLOUR, linewidth=1.5)
    axes.set_axisbelow(True)


def history_chart(history: Sequence[ReportDay]) -> Chart:
    """Volume (bars, left axis) and delivered percent (line, right axis) of the last 14 days."""
    height = 260
    figure = _figure(height)
    axes = figure.add_axes((0.09, 0.2, 0.8, 0.7))
    _style(axes)
    labels = [day.date.strftime("%d %b") for day in history]
    positions = list(range(len(history)))
    axes.bar(positions, [day.sent for day in history], color=VOLUME_COLOUR, width=0.7, label="Recipients sent")
    for position, day in zip(positions, history, strict=True):
        if not day.summarised:
            axes.text(position, 0, "no data", rotation=90, ha="center", va="bottom", fontsize=14, color="#999999")
    axes.set_xticks(positions, labels, rotation=45, ha="right")
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_formatter(_thousands())
    rate = axes.twinx()
    rate.spines["top"].set_visible(False)
    rate.spines["right"].set_color("#b8bec6")
    rate.tick_params(colors=RATE_COLOUR, labelsize=18)
    points = [(p, d.delivered_percent) for p, d in enumerate(history) if d.delivered_percent is not None]
    if points:
        xs, ys = zip(*points, strict=True)
        rate.plot(xs, ys, color=RATE_COLOUR, linewidth=3.5, marker="o", markersize=8, label="Delivered %")
        low = min(ys)
        rate.set_ylim(max(0.0, min(low - 2.0, 90.0)), 100.5)
    else:
        rate.set_ylim(0, 100.5)
    rate.yaxis.set_major_formatter(_percent())
    handles = axes.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
    figure.legend(handles=handles, loc="upper center", ncol=2, frameon=False, fontsize=18, bbox_to_anchor=(0.5, 1.0))
    summarised = [d for d in history if d.summarised]
    alt = (
        f"Recipients sent and delivered percent per day, {history[0].date.isoformat()} to "
        f"{history[-1].date.isoformat()}; {len(summarised)} of {len(history)} days summarised"
        if history
        else "No history"
    )
    return Chart("history", "Volume and delivery rate, last 14 days", alt, _png(figure), WIDTH_PX, height)


def latency_chart(domains: Sequence[ReportDomainLatency]) -> Chart | None:
    """p50 and p95 latency per recipient domain (horizontal bars); None when no domain has a latency."""
    rows = [d for d in domains if d.p95_seconds is not None or d.p50_seconds is not None]
    if not rows:
        return None
    height = 80 + 34 * len(rows)
    figure = _figure(height)
    # Room for the legend above and the axis label below, in pixels of the shown size.
    bottom, top = 46 / height, 28 / height
    axes = figure.add_axes((0.27, bottom, 0.68, 1 - bottom - top))
    _style(axes)
    axes.grid(axis="x", color=GRID_COLOUR, linewidth=1.5)
    axes.grid(axis="y", visible=False)
    positions = list(range(len(rows)))
    names = [_short(d.domain or "(unknown)") for d in rows]
    # A log axis cannot show 0; a missing value draws no bar (its table row says n/a).
    p50 = [d.p50_seconds if d.p50_seconds else float("nan") for d in rows]
    p95 = [d.p95_seconds if d.p95_seconds else float("nan") for d in rows]
    axes.barh([p - 0.2 for p in positions], p50, height=0.38, color=P50_COLOUR, label="p50")
    axes.barh([p + 0.2 for p in positions], p95, height=0.38, color=P95_COLOUR, label="p95")
    # p50 (seconds) and p95 (minutes to hours when a provider defers) differ by orders of magnitude:
    # on a linear axis the p50 bars vanish, so the axis is logarithmic.
    axes.set_xscale("log")
    values = [v for v in (*p50, *p95) if v == v]  # NaN != NaN
    low, high = min(values) / 1.6, max(values) * 1.3
    axes.set_xlim(low, high)
    axes.set_xticks([tick for tick in DURATION_TICKS if low <= tick <= high], minor=False)
    axes.xaxis.set_minor_locator(_no_ticks())
    axes.xaxis.set_major_formatter(_duration())
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_xlabel("seconds from send to final status", fontsize=16, color=TEXT_COLOUR)
    figure.legend(loc="upper center", ncol=2, frameon=False, fontsize=16, bbox_to_anchor=(0.6, 1.0))
    alt = "Latency p50 and p95 by recipient domain: " + "; ".join(
        f"{d.domain or '(unknown)'} {_seconds(d.p50_seconds)} / {_seconds(d.p95_seconds)}" for d in rows
    )
    return Chart("latency", "Latency by recipient domain", alt, _png(figure), WIDTH_PX, height)


def _short(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:,.0f}")


def _duration() -> Any:
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _: object) -> str:
        if value >= 3600:
            return f"{value / 3600:g} h"
        if value >= 60:
            return f"{value / 60:g} min"
        return f"{value:g} s"

    return FuncFormatter(label)


def _no_ticks() -> Any:
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _percent() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:.0f}%")
