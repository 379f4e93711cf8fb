"""A labeled synthetic e-commerce traffic generator: realistic normal behaviour plus seven attack scenarios.

Normal traffic is tuned to resemble the Taobao UserBehavior sample (events per active user-day, view:cart:fav:buy
ratios, in-session gaps, diurnal shape; see docs/generator_vs_taobao.md). Attacks are injected as whole sessions of
attacker accounts that also keep normal-labeled sessions, start at the same diurnal times as everyone else (the test
split is by day, so absolute time must not leak the class), and vary in rate so that the low-intensity ones mimic
normal users closely.

Everything is vectorised over rows with numpy: a session table (who, when, which device / ip / country, which label)
plus row blocks that point into it with an ordering key and the gap that precedes each row. Timestamps come from a
grouped cumulative sum of those gaps, so a scenario only has to say what happens in which order and how fast.

Modules: config (what to generate, what comes out), vocab (countries, texts, coupons), helpers (vectorised numpy),
world (catalogue, users, ids), rows (sessions and row blocks), normal (ordinary shopping), scenarios/ (one module per
attack, each saying which signals it leaves), post_purchase (reviews and refunds), assemble (`generate`).
The underscored names re-exported here are the building blocks `seqguard.inject` runs in a world made from real data.
"""

from seqguard.generator.assemble import _lookup, generate
from seqguard.generator.config import (
    DAY,
    DEFAULT_PREVALENCE,
    DEFAULT_START,
    LABELS,
    NORMAL,
    SCENARIOS,
    GeneratedData,
    GeneratorConfig,
    ScenarioConfig,
)
from seqguard.generator.helpers import _lognormal
from seqguard.generator.post_purchase import _post_purchase
from seqguard.generator.rows import _Rows, _Sessions, _timestamps
from seqguard.generator.scenarios import _SCENARIO_FUNCS
from seqguard.generator.vocab import COUNTRIES, COUPONS, PRICED_TYPES, TEXTS
from seqguard.generator.world import _assign_ips, _build_catalog, _build_users, _Catalog, _World

__all__ = [
    "COUNTRIES",
    "COUPONS",
    "DAY",
    "DEFAULT_PREVALENCE",
    "DEFAULT_START",
    "LABELS",
    "NORMAL",
    "PRICED_TYPES",
    "SCENARIOS",
    "TEXTS",
    "_SCENARIO_FUNCS",
    "GeneratedData",
    "GeneratorConfig",
    "ScenarioConfig",
    "_Catalog",
    "_Rows",
    "_Sessions",
    "_World",
    "_assign_ips",
    "_build_catalog",
    "_build_users",
    "_lognormal",
    "_lookup",
    "_post_purchase",
    "_timestamps",
    "generate",
]
