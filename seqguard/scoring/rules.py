"""Declarative rules over the aggregate window features (YAML), evaluated vectorised over a batch.

A rules file:

    mode: FIRST_MATCHED            # or ALL_MATCHED: which fired rules a decision reports
    rules:
      - id: card_testing_burst     # the reason code a decision carries
        description: five or more failed payment attempts within ten minutes
        outcome: block             # review | block
        conditions:                # all of them must hold
          - {feature: max_failed_payments_10m, op: ">=", value: 5}

Features are the names in `seqguard.features.FEATURE_NAMES`; an unknown one is rejected when the file is loaded, with
the rule and the field named, so a typo cannot silently turn a rule off. The hit matrix (`RuleSet.hits`) ignores the
mode: the ensemble uses every rule as an indicator; the mode only decides what a decision *reports*.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seqguard.configfile import parse_mapping, read_mapping
from seqguard.features import FEATURE_INDEX, FEATURE_NAMES

Outcome = Literal["review", "block"]
Op = Literal[">=", ">", "<=", "<", "==", "!="]
OUTCOME_RANK = {"allow": 0, "review": 1, "block": 2}

_OPS = {
    ">=": np.greater_equal,
    ">": np.greater,
    "<=": np.less_equal,
    "<": np.less,
    "==": np.equal,
    "!=": np.not_equal,
}


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file, the rule and the field."""


class Mode(StrEnum):
    FIRST_MATCHED = "FIRST_MATCHED"
    ALL_MATCHED = "ALL_MATCHED"


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str
    op: Op
    value: float

    @field_validator("feature")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in FEATURE_INDEX:
            raise ValueError(f"unknown feature {v!r}; known features: {', '.join(FEATURE_NAMES)}")
        return v

    def text(self) -> str:
        return f"{self.feature} {self.op} {self.value:g}"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    outcome: Outcome
    conditions: list[Condition] = Field(min_length=1)


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = Mode.FIRST_MATCHED
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_case(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleSet:
        seen: set[str] = set()
        for r in self.rules:
            if r.id in seen:
                raise ValueError(f"rule id {r.id!r} is used twice; ids are reason codes and must be unique")
            seen.add(r.id)
        return self

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def hits(self, features: np.ndarray) -> np.ndarray:
        """bool [B, n_rules]: which rules hold for each window (all of them, whatever the mode)."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"features must be [batch, {len(FEATURE_NAMES)}], got {list(x.shape)}")
        failed = np.zeros((x.shape[0], len(self.rules)), dtype=np.int64)
        for op, columns, values, member in self._by_operator:
            # Compare in float32, the dtype features travel in, so 0.1-style thresholds behave as written.
            failed += (~_OPS[op](x[:, columns], values)).astype(np.int64) @ member
        return failed == 0

    @cached_property
    def _by_operator(self) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        """Every condition grouped by operator: (op, feature columns, float32 values, condition -> rule 0/1 matrix).
        One comparison per operator instead of one per condition (a real-time request scores one window)."""
        groups: dict[str, list[tuple[int, float, int]]] = {}
        for j, rule in enumerate(self.rules):
            for c in rule.conditions:
                groups.setdefault(c.op, []).append((FEATURE_INDEX[c.feature], c.value, j))
        out = []
        for op, conds in groups.items():
            member = np.zeros((len(conds), len(self.rules)), dtype=np.int64)
            member[np.arange(len(conds)), [j for _, _, j in conds]] = 1
            out.append((op, np.array([f for f, _, _ in conds], dtype=np.int64),
                        np.array([v for _, v, _ in conds], dtype=np.float32), member))
        return out

    def fired(self, hit_row: np.ndarray) -> list[dict[str, str]]:
        """The rules a decision reports for one window's hit row: the first match, or every match, in file order."""
        out = []
        for j in np.flatnonzero(hit_row):
            rule = self.rules[int(j)]
            out.append({"id": rule.id, "outcome": rule.outcome, "reason": rule.description or _auto_reason(rule)})
            if self.mode == Mode.FIRST_MATCHED:
                break
        return out

    def outcome_rank(self, hits: np.ndarray) -> np.ndarray:
        """int [B]: the strongest outcome among the rules a decision reports (0 allow, 1 review, 2 block)."""
        ranks = np.array([OUTCOME_RANK[r.outcome] for r in self.rules], dtype=np.int64)
        if not len(ranks):
            return np.zeros(hits.shape[0], dtype=np.int64)
        if self.mode == Mode.FIRST_MATCHED:
            first = hits.argmax(axis=1)
            return np.where(hits.any(axis=1), ranks[first], 0)
        return np.where(hits, ranks[None, :], 0).max(axis=1)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _auto_reason(rule: Rule) -> str:
    return " and ".join(c.text() for c in rule.conditions)


def _describe(err: ValidationError, raw: dict[str, Any]) -> str:
    """pydantic locations ('rules', 3, 'conditions', 0, 'feature') to 'rule card_testing: conditions[0].feature'."""
    parts = []
    rules = raw.get("rules") if isinstance(raw.get("rules"), list) else []
    for e in err.errors():
        loc = list(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        where = ""
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            i = loc[1]
            rid = rules[i].get("id") if i < len(rules) and isinstance(rules[i], dict) else None
            where = f"rule {rid!r}" if rid else f"rules[{i}]"
            rest = loc[2:]
            field = ""
            for p in rest:
                field += f"[{p}]" if isinstance(p, int) else (f".{p}" if field else str(p))
            where += f": {field}" if field else ""
        else:
            where = ".".join(map(str, loc)) or "(top level)"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    return _validate(parse_mapping(text, source, RulesError), source)


def load_rules(path: str | Path) -> RuleSet:
    return _validate(read_mapping(path, "rules file", RulesError), str(path))


def _validate(raw: dict[str, Any], source: str) -> RuleSet:
    # Not configfile.validate: a rule is located by its id (`rule 'busy': conditions[1].feature`), not its index.
    try:
        return RuleSet.model_validate(raw)
    except ValidationError as e:
        raise RulesError(f"{source}: {_describe(e, raw)}") from None


def default_rules_path() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "rules.yaml"
