"""The seven attack scenarios, one module each, and the registry `generate` runs them from.

A scenario function takes the world, the session table, the row blocks, its attacker users and its label code, and
adds that scenario's sessions (labeled with it) for those users. The attackers also keep normal-labeled sessions of
their own (normal.py), so an account is never all attack. Each module's docstring says what the attack is and which
signals it leaves in the events, in the per-user sequences and in the aggregates; a quarter of the attackers of every
scenario are "careful" (a fraction of the rate, human-like pacing) and leave weaker versions of them by design.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from seqguard.generator.rows import _Rows, _Sessions
from seqguard.generator.scenarios.account_takeover import _account_takeover
from seqguard.generator.scenarios.brushing import _brushing
from seqguard.generator.scenarios.card_testing import _card_testing
from seqguard.generator.scenarios.click_farm_bot import _click_farm_bot
from seqguard.generator.scenarios.coupon_abuse import _coupon_abuse
from seqguard.generator.scenarios.review_spam import _review_spam
from seqguard.generator.scenarios.scalping import _scalping
from seqguard.generator.world import _World

ScenarioFunc = Callable[[_World, _Sessions, _Rows, np.ndarray, int], None]

# In SCENARIOS order (seqguard.generator.config); tests/test_generator.py checks the two agree.
_SCENARIO_FUNCS: dict[str, ScenarioFunc] = {
    "click_farm_bot": _click_farm_bot,
    "brushing": _brushing,
    "account_takeover": _account_takeover,
    "card_testing": _card_testing,
    "coupon_abuse": _coupon_abuse,
    "scalping": _scalping,
    "review_spam": _review_spam,
}
