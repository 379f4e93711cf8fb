"""Entity labels from a table (a chargeback list, a confirmed-bot list) and their join onto an events frame.

A labels table has one row per entity: `entity_id,label[,scenario]` (CSV or Parquet). The id column may also be
named after the entity key (`user_id`, `device_id`, ...), and other column names can be given (`columns=`), e.g.
a mapping's `labels:` section. Ids are normalised exactly as event ids are (seqguard.io.normalize_ids), so an
integer id or an over-long id clipped to head + hash still joins.

`join_labels` writes the labels onto the events as the per-event columns `is_anomaly` / `scenario` the rest of
seqguard already reads: an entity's label marks every event (hence every window) of that entity. Entities with
events but no label are treated as normal or dropped (`unlabelled="normal" | "exclude"`), and the join reports how
many entities fell on each side; it fails only when no labelled entity occurs in the events at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from seqguard.config import ENTITY_KEYS

Unlabelled = Literal["normal", "exclude"]
UNLABELLED_CHOICES: tuple[str, ...] = ("normal", "exclude")
ANOMALY = "anomaly"  # scenario of a positive entity whose table names none (as for per-event labels)
NORMAL = "normal"
_TRUE = {"1", "true", "yes", "y", "t", "1.0"}
_FALSE = {"0", "false", "no", "n", "f", "0.0"}
_EXAMPLES = 5


class LabelsError(ValueError):
    """A labels table that cannot be used; the message names the file, the column and the counts."""


def _read_table(p: Path) -> pd.DataFrame:
    if not p.exists():
        raise LabelsError(f"labels file {p} does not exist")
    if p.is_dir():
        raise LabelsError(f"labels file {p} is a directory, expected a .csv or .parquet file")
    suffixes = [s.lower() for s in p.suffixes]
    try:
        if any(s in (".parquet", ".pq") for s in suffixes):
            return pd.read_parquet(p)
        if any(s in (".csv", ".tsv", ".txt") for s in suffixes):
            return pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""],
                               sep="\t" if ".tsv" in suffixes else ",")
    except pd.errors.EmptyDataError:
        raise LabelsError(f"labels file {p} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        raise LabelsError(f"labels file {p} cannot be read: {e}") from None
    raise LabelsError(f"labels file {p}: cannot tell the format from the suffix; use .csv or .parquet")


def _pick(df: pd.DataFrame, wanted: str | None, candidates: tuple[str, ...], role: str, p: Path) -> str:
    if wanted is not None:
        if wanted not in df.columns:
            raise LabelsError(f"labels file {p}: the {role} column {wanted!r} is missing "
                              f"(columns: {list(df.columns)[:20]})")
        return wanted
    for c in candidates:
        if c in df.columns:
            return c
    raise LabelsError(f"labels file {p}: no {role} column; expected one of {list(candidates)} "
                      f"(columns: {list(df.columns)[:20]})")


def _examples(values: Any) -> str:
    vals = [str(v)[:40] for v in list(values)[:_EXAMPLES]]
    return ", ".join(repr(v) for v in vals)


def _binary(raw: pd.Series, col: str, p: Path) -> np.ndarray:
    """0/1, true/false, yes/no (any case) -> int 0/1; anything else is an error with counts and examples."""
    if pd.api.types.is_bool_dtype(raw):
        return raw.to_numpy(dtype=np.int64)
    text = raw.astype("string").str.strip().str.lower()
    missing = text.isna().to_numpy()
    is_true = text.isin(_TRUE).fillna(False).to_numpy(dtype=bool)
    is_false = text.isin(_FALSE).fillna(False).to_numpy(dtype=bool)
    bad = ~(is_true | is_false) & ~missing
    if missing.any() or bad.any():
        parts = []
        if missing.any():
            parts.append(f"{int(missing.sum())} row(s) have no label")
        if bad.any():
            counts = raw[bad].astype(str).value_counts()
            parts.append(f"{int(bad.sum())} row(s) are not binary (0/1, true/false): "
                         + ", ".join(f"{v[:40]!r} x{n}" for v, n in counts.head(_EXAMPLES).items()))
        raise LabelsError(f"labels file {p}: column {col!r}: " + "; ".join(parts))
    return is_true.astype(np.int64)


def load_labels(path: str | Path, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Read a labels table: DataFrame[entity_id: str, label: int 0/1, scenario: str | None], one row per entity.

    `columns` may rename the roles: {"entity_id": "username", "label": "is_vandal_user", "scenario": "kind"}.
    Raises LabelsError for a missing/unreadable file, missing columns, missing ids, duplicate ids and non-binary
    labels, each with counts.
    """
    from seqguard.io import normalize_ids

    p = Path(path)
    columns = dict(columns or {})
    unknown = sorted(set(columns) - {"entity_id", "label", "scenario"})
    if unknown:
        raise LabelsError(f"labels columns: unknown role(s) {unknown}; known: entity_id, label, scenario")
    df = _read_table(p)
    if df.empty:
        raise LabelsError(f"labels file {p} has no rows")
    df.columns = [str(c).strip() for c in df.columns]
    id_col = _pick(df, columns.get("entity_id"), ("entity_id", *ENTITY_KEYS), "entity id", p)
    label_col = _pick(df, columns.get("label"), ("label", "is_anomaly"), "label", p)
    scen_col = columns.get("scenario")
    if scen_col is not None and scen_col not in df.columns:
        raise LabelsError(f"labels file {p}: the scenario column {scen_col!r} is missing "
                          f"(columns: {list(df.columns)[:20]})")
    if scen_col is None and "scenario" in df.columns:
        scen_col = "scenario"

    ids, _ = normalize_ids(df[id_col])
    no_id = ids.isna().to_numpy()
    if no_id.any():
        raise LabelsError(f"labels file {p}: column {id_col!r}: {int(no_id.sum())} row(s) have no entity id")
    dup = ids.duplicated(keep=False)
    if dup.any():
        n_ids = int(ids[dup].nunique())
        raise LabelsError(f"labels file {p}: column {id_col!r}: {n_ids} entity id(s) appear more than once "
                          f"({int(dup.sum())} rows), e.g. {_examples(ids[dup].unique())}; keep one row per entity")
    label = _binary(df[label_col], label_col, p)
    if scen_col is not None:
        scen = df[scen_col].astype(object).where(df[scen_col].notna(), None)
        scen = scen.map(lambda v: None if v is None or not str(v).strip() else str(v).strip())
    else:
        scen = pd.Series([None] * len(df), dtype=object)
    return pd.DataFrame({"entity_id": ids.astype(object).to_numpy(), "label": label,
                         "scenario": scen.to_numpy(dtype=object)})


@dataclass(frozen=True)
class LabelJoin:
    """What a join did, in counts (printed by train / evaluate / score, saved in metrics)."""

    entity_key: str
    unlabelled: str
    labelled_entities: int  # rows of the labels table
    positive_entities: int  # labelled positive and present in the events
    negative_entities: int  # labelled negative and present in the events
    labelled_absent_from_events: int
    event_entities: int
    event_entities_without_label: int  # treated as normal, or excluded (see `unlabelled`)
    events_excluded: int
    replaced_event_labels: bool  # the events had is_anomaly / scenario columns; the table's labels replaced them

    def summary(self) -> str:
        fate = "treated as normal" if self.unlabelled == "normal" else "excluded"
        lines = [f"labels: {self.positive_entities:,} positive and {self.negative_entities:,} negative entities "
                 f"matched on {self.entity_key}",
                 f"  {self.labelled_absent_from_events:,} of {self.labelled_entities:,} labelled entities have no "
                 "events",
                 f"  {self.event_entities_without_label:,} of {self.event_entities:,} entities in the events have "
                 f"no label: {fate} (--unlabelled normal|exclude)"]
        if self.events_excluded:
            lines.append(f"  {self.events_excluded:,} events of unlabelled entities dropped")
        if self.replaced_event_labels:
            lines.append("  the events' own is_anomaly / scenario columns were replaced by the labels table")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def join_labels(events: pd.DataFrame, labels: pd.DataFrame, entity_key: str = "user_id",
                unlabelled: str = "normal") -> tuple[pd.DataFrame, LabelJoin]:
    """Events with `is_anomaly` (bool) and `scenario` (str) from an entity labels table (`load_labels`)."""
    if unlabelled not in UNLABELLED_CHOICES:
        raise LabelsError(f"unlabelled: {unlabelled!r} is not one of {', '.join(UNLABELLED_CHOICES)}")
    if entity_key not in events.columns:
        raise LabelsError(f"the events have no {entity_key!r} column to join the labels on")
    keys = events[entity_key]
    by_id = labels.set_index("entity_id")
    present = keys.isin(by_id.index).to_numpy(dtype=bool)
    event_entities = keys.dropna().unique()
    matched = pd.Index(event_entities).intersection(by_id.index)
    if len(matched) == 0:
        raise LabelsError(
            f"no entity of the labels table occurs in the events: 0 of {len(labels):,} labelled ids match the "
            f"{len(event_entities):,} {entity_key} values of the events (e.g. labels {_examples(labels['entity_id'])}"
            f"; events {_examples(event_entities)}); check the id column and the mapping's entity key")
    label_of = by_id["label"].reindex(keys.to_numpy()).to_numpy()
    scen_of = by_id["scenario"].reindex(keys.to_numpy()).to_numpy(dtype=object)
    out = events.copy()
    replaced = "is_anomaly" in out.columns or "scenario" in out.columns
    is_anom = np.where(present, label_of, 0).astype(bool)
    scenario = np.where(is_anom, np.where(pd.isna(scen_of), ANOMALY, scen_of), NORMAL).astype(object)
    out["is_anomaly"] = is_anom
    out["scenario"] = scenario
    dropped = 0
    if unlabelled == "exclude":
        dropped = int((~present).sum())
        out = out.loc[present].reset_index(drop=True)
    m = by_id.loc[matched, "label"]
    report = LabelJoin(
        entity_key=entity_key, unlabelled=unlabelled, labelled_entities=len(labels),
        positive_entities=int((m == 1).sum()), negative_entities=int((m == 0).sum()),
        labelled_absent_from_events=len(labels) - len(matched), event_entities=len(event_entities),
        event_entities_without_label=len(event_entities) - len(matched), events_excluded=dropped,
        replaced_event_labels=replaced)
    return out, report
