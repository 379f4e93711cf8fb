"""What to generate (GeneratorConfig, one ScenarioConfig per attack) and what comes out (GeneratedData)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seqguard.events import TS_MAX, TS_MIN

NORMAL = "normal"
SCENARIOS: tuple[str, ...] = (
    "click_farm_bot",
    "brushing",
    "account_takeover",
    "card_testing",
    "coupon_abuse",
    "scalping",
    "review_spam",
)
LABELS: tuple[str, ...] = (NORMAL, *SCENARIOS)
# Defaults sum to 6.2 % of users.
DEFAULT_PREVALENCE: dict[str, float] = {
    "click_farm_bot": 0.012,
    "brushing": 0.010,
    "account_takeover": 0.008,
    "card_testing": 0.006,
    "coupon_abuse": 0.012,
    "scalping": 0.006,
    "review_spam": 0.008,
}
DEFAULT_START = datetime(2026, 10, 5, tzinfo=UTC)
SHOP_UTC_OFFSET_HOURS = 8  # the diurnal rhythm is that of a shop in UTC+8 (like Taobao's)
DAY = 86400.0


class ScenarioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prevalence: float = Field(ge=0.0, le=1.0, description="share of users who are attackers of this scenario")
    intensity: float = Field(1.0, gt=0.0, le=20.0, description="multiplier on the attack's rate and burst sizes")


def _scenario_default(name: str) -> Any:
    return Field(default_factory=lambda: ScenarioConfig(prevalence=DEFAULT_PREVALENCE[name]))


class GeneratorConfig(BaseModel):
    """What to generate. Scenario fields accept {prevalence, intensity}; a missing prevalence keeps its default."""

    model_config = ConfigDict(extra="forbid")

    users: int = Field(10_000, ge=1, le=5_000_000)
    days: int = Field(7, ge=1, le=366)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    start: datetime = Field(DEFAULT_START, description="start of the period (UTC); it lasts `days` x 24 h")
    new_user_share: float = Field(0.12, ge=0.0, le=1.0, description="share of normal users who sign up mid-period")
    activity: float = Field(1.0, gt=0.0, le=10.0, description="multiplier on normal users' session rate")
    click_farm_bot: ScenarioConfig = _scenario_default("click_farm_bot")
    brushing: ScenarioConfig = _scenario_default("brushing")
    account_takeover: ScenarioConfig = _scenario_default("account_takeover")
    card_testing: ScenarioConfig = _scenario_default("card_testing")
    coupon_abuse: ScenarioConfig = _scenario_default("coupon_abuse")
    scalping: ScenarioConfig = _scenario_default("scalping")
    review_spam: ScenarioConfig = _scenario_default("review_spam")

    @model_validator(mode="before")
    @classmethod
    def _fill_prevalence(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for name in SCENARIOS:
                value = data.get(name)
                if isinstance(value, dict) and "prevalence" not in value:
                    data[name] = {"prevalence": DEFAULT_PREVALENCE[name], **value}
        return data

    @field_validator("start")
    @classmethod
    def _start_utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("needs a UTC offset (e.g. 2026-10-05T00:00:00Z)")
        v = v.astimezone(UTC)
        if not TS_MIN <= v < TS_MAX:
            raise ValueError(f"must lie in {TS_MIN.year}..{TS_MAX.year}")
        return v

    @model_validator(mode="after")
    def _check(self) -> GeneratorConfig:
        total = sum(self.scenario(n).prevalence for n in SCENARIOS)
        if total > 1.0:
            raise ValueError(f"the scenario prevalences ({', '.join(f'{n}.prevalence' for n in SCENARIOS)}) "
                             f"sum to {total:.3f}, more than 1")
        if self.start.timestamp() + self.days * DAY >= TS_MAX.timestamp():
            raise ValueError(f"start + days runs past {TS_MAX.year}")
        return self

    def scenario(self, name: str) -> ScenarioConfig:
        return getattr(self, name)


@dataclass
class GeneratedData:
    """The generated data set.

    `events`: EVENT_FIELDS in order, then `is_anomaly` (True only on attack events) and `scenario` (the scenario's
    name on attack events, "normal" otherwise); ts float64 epoch seconds UTC (ms resolution), rows sorted by ts.
    `users`: user_id, is_anomaly and scenario (what the account is: attackers also have normal-labeled events),
    first_seen (ts of the user's first event, float64 epoch seconds).
    """

    events: pd.DataFrame
    users: pd.DataFrame
    config: GeneratorConfig

    def summary(self) -> pd.DataFrame:
        """Per label: attacker users, events of that label, and users with at least one such event."""
        by = self.events.groupby("scenario", sort=False)["user_id"]
        ev = pd.DataFrame({"events": by.size(), "event_users": by.nunique()})
        us = self.users.groupby("scenario", sort=False).size().rename("users")
        out = pd.DataFrame(index=pd.Index(LABELS, name="scenario")).join(us).join(ev).fillna(0).astype(np.int64)
        return out

