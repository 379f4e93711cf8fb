"""How real does generated traffic look? The same behaviour statistics for any events frame, and a side-by-side
comparison of a generated data set with the Taobao UserBehavior sample.

Taobao records only four behaviours (pv, cart, fav, buy), so every statistic is computed on the mapped subset
(view, add_to_cart, favorite, purchase) of both sides. Sessions are cut the same way on both sides (a gap of more
than 30 minutes within a user starts a new one) because Taobao has no session ids. Days and hours are shop local
time (UTC+8 for both).

    python -m seqguard.realism --taobao PATH/UserBehavior.csv --generated DIR   # DIR holds events.<parquet|csv|jsonl>
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqguard.io import DataError, ReadReport, load_mapping, read_events

MAPPED_TYPES: dict[str, str] = {"view": "pv", "add_to_cart": "cart", "favorite": "fav", "purchase": "buy"}
# The column mapping shipped with seqguard (pv/cart/fav/buy -> view/add_to_cart/favorite/purchase).
TAOBAO_MAPPING_FILE = Path(__file__).parent / "data" / "taobao_userbehavior.yaml"
# The sample's official window, 2017-11-25..2017-12-03 in UTC+8; a few dozen rows fall outside it (clock errors).
TAOBAO_WINDOW = (1511539200.0, 1512316800.0)
PERCENTILES = (10, 25, 50, 75, 90, 99)
SESSION_GAP_S = 1800.0


@dataclass
class RealismStats:
    """Behaviour statistics of one events frame (mapped subset)."""

    users: int
    events: int
    days: float
    events_per_user_day: float  # all user-days, inactive ones included
    active_day_share: float  # active days / days observed, averaged over users
    per_active_day: dict[int, float]  # percentiles of events per active user-day
    per_active_day_mean: float
    type_share: dict[str, float]  # share of each mapped type among mapped events
    gaps: dict[int, float]  # percentiles of in-session inter-event gaps (s)
    zero_gap_share: float
    per_session: dict[int, float]  # percentiles of events per session
    per_session_mean: float
    sessions_per_active_day: float
    repeat_item_share: float  # events on an item the user had already touched (median over users)
    hour_share: np.ndarray = field(repr=False)  # 24 shares, shop local hour

    def per_100_views(self) -> dict[str, float]:
        v = self.type_share.get("view", 0.0)
        return {t: (100.0 * s / v if v else float("nan")) for t, s in self.type_share.items()}


def realism_stats(frame: pd.DataFrame, utc_offset_hours: float = 8.0, session_gap_s: float = SESSION_GAP_S,
                  window: tuple[float, float] | None = None) -> RealismStats:
    """Statistics of the view/add_to_cart/favorite/purchase events of `frame` (user_id, ts, event_type[, item_id])."""
    df = frame[frame["event_type"].isin(list(MAPPED_TYPES))]
    if window is not None:
        df = df[(df["ts"] >= window[0]) & (df["ts"] < window[1])]
    if df.empty:
        raise ValueError("no view / add_to_cart / favorite / purchase events to compare")
    cols = ["user_id", "ts", "event_type"] + (["item_id"] if "item_id" in df else [])
    df = df[cols].sort_values(["user_id", "ts"], kind="stable")
    user = df["user_id"].to_numpy()
    ts = df["ts"].to_numpy(dtype=float)
    local = ts + utc_offset_hours * 3600.0
    # Days are 24 h periods from the window start (the first event's hour): a window that starts at 08:00 local
    # time would otherwise count a partial first and last calendar day.
    origin = np.floor(ts.min() / 3600.0) * 3600.0
    day = np.floor((ts - origin) / 86400.0).astype(np.int64)
    n_days = float(day.max() + 1)

    user_day = pd.DataFrame({"u": user, "d": day}).groupby(["u", "d"], sort=False).size()
    active_days = user_day.groupby(level=0).size()
    n_users = len(active_days)

    same_user = np.r_[False, user[1:] == user[:-1]]
    gap = np.diff(ts, prepend=np.nan)
    in_session = same_user & (gap <= session_gap_s)
    gaps = gap[in_session]
    session_id = np.cumsum(~in_session)
    per_session = np.bincount(session_id)[1:]

    shares = df["event_type"].value_counts(normalize=True)
    hours = np.floor((local % 86400.0) / 3600.0).astype(np.int64)
    hour_share = np.bincount(hours, minlength=24)[:24] / len(hours)

    repeat = float("nan")
    if "item_id" in df:
        first_touch = ~df.duplicated(["user_id", "item_id"]).to_numpy()
        repeat = float(pd.Series(~first_touch).groupby(user).mean().median())

    return RealismStats(
        users=n_users,
        events=len(df),
        days=n_days,
        events_per_user_day=len(df) / (n_users * n_days),
        active_day_share=float((active_days / n_days).mean()),
        per_active_day=_percentiles(user_day.to_numpy()),
        per_active_day_mean=float(user_day.mean()),
        type_share={t: float(shares.get(t, 0.0)) for t in MAPPED_TYPES},
        gaps=_percentiles(gaps),
        zero_gap_share=float((gaps == 0).mean()) if len(gaps) else float("nan"),
        per_session=_percentiles(per_session),
        per_session_mean=float(per_session.mean()),
        sessions_per_active_day=len(per_session) / len(user_day),
        repeat_item_share=repeat,
        hour_share=hour_share,
    )


def _percentiles(x: np.ndarray) -> dict[int, float]:
    if len(x) == 0:
        return {p: float("nan") for p in PERCENTILES}
    return {p: float(v) for p, v in zip(PERCENTILES, np.percentile(x, PERCENTILES), strict=True)}


def load_taobao(path: str | Path, official_window: bool = True) -> tuple[pd.DataFrame, ReadReport]:
    """The Taobao sample as an events frame; bad rows (its truncated last line) are skipped and reported."""
    frame, report = read_events(path, mapping=load_mapping(TAOBAO_MAPPING_FILE), on_error="skip")
    if official_window:
        frame = frame[(frame["ts"] >= TAOBAO_WINDOW[0]) & (frame["ts"] < TAOBAO_WINDOW[1])]
    return frame, report


def load_generated(directory: str | Path) -> pd.DataFrame:
    d = Path(directory)
    for ext in ("parquet", "csv", "jsonl"):
        p = d / f"events.{ext}"
        if p.exists():
            frame, _ = read_events(p, on_error="fail")
            return frame
    raise DataError(f"{d}: no events.parquet / events.csv / events.jsonl (write one with `seqguard generate`)")


def hour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two hour-of-day distributions (0 = same shape, 1 = disjoint)."""
    return float(0.5 * np.abs(np.asarray(a) - np.asarray(b)).sum())


def compare_markdown(columns: dict[str, RealismStats]) -> str:
    """A markdown report with one column per named statistics set (the first is the reference)."""
    names = list(columns)
    stats = list(columns.values())

    def row(label: str, values: Sequence[str]) -> str:
        return f"| {label} | " + " | ".join(values) + " |"

    def num(v: float, digits: int = 1) -> str:
        return "n/a" if v != v else f"{v:,.{digits}f}"

    head = [row("statistic", names), "|---|" + "---:|" * len(names)]
    lines = ["### Volume and activity", "", *head]
    lines.append(row("users", [f"{s.users:,}" for s in stats]))
    lines.append(row("mapped events", [f"{s.events:,}" for s in stats]))
    lines.append(row("days observed", [num(s.days, 0) for s in stats]))
    lines.append(row("events / user / day (all days)", [num(s.events_per_user_day) for s in stats]))
    lines.append(row("share of days a user is active", [num(s.active_day_share, 2) for s in stats]))
    lines.append(row("events / active user-day, mean", [num(s.per_active_day_mean) for s in stats]))
    for p in PERCENTILES:
        lines.append(row(f"events / active user-day, p{p}", [num(s.per_active_day[p], 0) for s in stats]))
    lines.append(row("sessions / active user-day", [num(s.sessions_per_active_day, 2) for s in stats]))
    lines.append(row("events / session, mean", [num(s.per_session_mean) for s in stats]))
    for p in PERCENTILES:
        lines.append(row(f"events / session, p{p}", [num(s.per_session[p], 0) for s in stats]))
    lines.append(row("repeat-item share (median user)", [num(s.repeat_item_share, 2) for s in stats]))

    lines += ["", "### Behaviour mix (view:cart:fav:buy)", "", *head]
    for t, short in MAPPED_TYPES.items():
        lines.append(row(f"{short} share %", [num(100 * s.type_share[t], 2) for s in stats]))
    for t, short in list(MAPPED_TYPES.items())[1:]:
        lines.append(row(f"{short} per 100 views", [num(s.per_100_views()[t], 2) for s in stats]))
    lines.append(row("buy / cart", [num(s.type_share["purchase"] / s.type_share["add_to_cart"], 2)
                                    if s.type_share["add_to_cart"] else "n/a" for s in stats]))

    lines += ["", f"### Inter-event gaps within sessions (s; a gap over {SESSION_GAP_S:.0f} s starts a session)", "",
              *head]
    for p in PERCENTILES:
        lines.append(row(f"gap p{p}", [num(s.gaps[p], 0) for s in stats]))
    lines.append(row("zero gaps %", [num(100 * s.zero_gap_share, 2) for s in stats]))

    lines += ["", "### Hour of day (shop local time, % of events)", "", *head]
    for h in range(24):
        lines.append(row(f"{h:02d}h", [num(100 * s.hour_share[h], 1) for s in stats]))
    ref = stats[0].hour_share
    lines.append(row("total variation vs " + names[0], [num(hour_distance(ref, s.hour_share), 3) for s in stats]))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqguard.realism", description=__doc__.split("\n\n")[0])
    parser.add_argument("--taobao", required=True, type=Path, help="UserBehavior CSV (no header)")
    parser.add_argument("--generated", required=True, type=Path, help="folder with events.<parquet|csv|jsonl>")
    args = parser.parse_args(argv)
    try:
        taobao, report = load_taobao(args.taobao)
        generated = load_generated(args.generated)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    columns = {"Taobao": realism_stats(taobao), "generated (all)": realism_stats(generated)}
    if "scenario" in generated:
        columns["generated (normal events)"] = realism_stats(generated[generated["scenario"] == "normal"])
    print(f"Taobao: {report.rows_ok:,} rows kept, {report.rows_skipped} skipped"
          + (f" ({'; '.join(str(e) for e in report.errors[:3])})" if report.errors else "")
          + f", {len(taobao):,} inside the official window")
    print(f"generated: {len(generated):,} events from {args.generated}\n")
    print(compare_markdown(columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
