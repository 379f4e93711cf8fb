"""Review spam: bursts of copy-paste reviews on target items the account never bought (promotion or defamation).

Who: existing accounts on their own devices and IPs (normal session IPs), each with 20 target items in one category.

Signals it leaves:
- events: `review` bursts (median 8 x strength per session, up to 80; careful 1-3) on the targets, 60 % preceded by a
  view (careful 95 %); the texts come from 3 spam templates per account ("Great product!!! ...", "Scam. Do not buy
  ..."); careful spammers write ordinary-looking review texts instead.
- sequences: (view) -> review, (view) -> review at a median 18 s (careful 60 s), with no purchase before.
- aggregates: reviews without a purchase of the item, duplicate review texts per account and across accounts,
  reviews per session, reviewed items concentrated in one category.
"""

from __future__ import annotations

import numpy as np

from seqguard.generator.helpers import _expand, _lognormal
from seqguard.generator.normal import _session_ip
from seqguard.generator.rows import _Rows, _Sessions
from seqguard.generator.scenarios.common import _attack_starts
from seqguard.generator.vocab import ET, TEXT_RANGES
from seqguard.generator.world import _World


def _review_spam(w: _World, sessions: _Sessions, rows: _Rows, users: np.ndarray, code: int) -> None:
    """Bursts of copy-paste reviews on target items nobody in the account bought; careful ones vary their text."""
    rng, cat, u = w.rng, w.catalog, w.users
    n = len(users)
    s = u.strength[users]
    careful = s < 0.5
    target_cat = cat.sample_categories(rng, n)
    targets = cat.cat_offset[target_cat][:, None] + (rng.integers(0, 60, (n, 20)) % cat.cat_items[target_cat][:, None])
    n_sess = np.maximum(1, rng.poisson(0.5 + 0.3 * s * w.cfg.days))
    owner, su, start = _attack_starts(w, users, n_sess)
    dslot = rng.integers(0, u.n_dev[su])
    ip, country = _session_ip(w, su)
    sid = sessions.add(su, start, u.devices[su, dslot], ip, country, code)
    S = len(sid)
    rows.add(sid[rng.random(S) < 0.5], -2.0, ET["login"], 0.0)
    c = careful[owner]
    m = np.where(c, rng.integers(1, 4, S), np.ceil(_lognormal(rng, 8.0 * s[owner], 0.5, S, 2, 80))).astype(np.int64)
    rs, slot = _expand(m)
    item = targets[owner[rs], rng.integers(0, 20, len(rs))]
    cr = c[rs]
    view = rng.random(len(rs)) < np.where(cr, 0.95, 0.6)
    view_gap = _lognormal(rng, np.where(cr[view], 40.0, 8.0), 0.5, view.sum(), 1.0)
    rows.add(sid[rs[view]], slot[view], ET["view"], view_gap, item=item[view])
    spam_lo, spam_hi = TEXT_RANGES["spam"]
    rev_lo, rev_hi = TEXT_RANGES["review"]
    per_user_template = rng.integers(spam_lo, spam_hi, (n, 3))
    spam = per_user_template[owner[rs], rng.integers(0, 3, len(rs))]
    text = np.where(cr, rng.integers(rev_lo, rev_hi, len(rs)), spam)
    rows.add(sid[rs], slot + 0.5, ET["review"], _lognormal(rng, np.where(cr, 60.0, 18.0), 0.5, len(rs), 2.0),
             item=item, text=text)

