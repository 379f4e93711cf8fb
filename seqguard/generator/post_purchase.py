"""After purchases: reviews and refunds hours or days later, in their own short sessions."""

from __future__ import annotations

import numpy as np

from seqguard.generator.config import DAY, LABELS
from seqguard.generator.helpers import _lognormal
from seqguard.generator.rows import _Rows, _Sessions
from seqguard.generator.vocab import ET, TEXT_RANGES
from seqguard.generator.world import _World


def _post_purchase(w: _World, main: dict[str, np.ndarray], sess: dict[str, np.ndarray], sessions: _Sessions,
                   rows: _Rows) -> None:
    rng = w.rng
    is_buy = main["etype"] == ET["purchase"]
    p_sess = main["sess"][is_buy]
    label = sess["label"][p_sess]
    brushing = LABELS.index("brushing")
    # Shoppers review a good share of orders (platforms nudge them to), so a review is no oddity in itself.
    p_review = np.where(label == 0, 0.25, np.where(label == brushing, 0.75, 0.0))
    p_refund = np.where(label == 0, 0.02, 0.0)
    r = rng.random(len(p_sess))
    review = r < p_review
    refund = (r >= p_review) & (r < p_review + p_refund)
    for kind, sel in (("review", review), ("refund", refund)):
        idx = np.flatnonzero(is_buy)[sel]
        ps = main["sess"][idx]
        lab = sess["label"][ps]
        median = np.where(lab == brushing, 8 * 3600.0, 2 * DAY)
        start = main["ts"][idx] + _lognormal(rng, median, 0.7, len(idx), 1800.0, 12 * DAY)
        keep = start < w.end
        idx, ps, lab, start = idx[keep], ps[keep], lab[keep], start[keep]
        user = sess["user"][ps]
        sid = sessions.add(user, start, sess["device"][ps], sess["ip"][ps], sess["country"][ps], lab)
        k = len(sid)
        item = main["item"][idx]
        rows.add(sid[rng.random(k) < 0.2], -1.0, ET["login"], 0.0)
        look = rng.random(k) < 0.5
        rows.add(sid[look], 0.0, ET["view"], _lognormal(rng, 20.0, 0.6, look.sum(), 1.0), item=item[look])
        if kind == "review":
            rev_lo, rev_hi = TEXT_RANGES["review"]
            br_lo, br_hi = TEXT_RANGES["brushing"]
            text = np.where(lab == brushing, rng.integers(br_lo, br_hi, k), rng.integers(rev_lo, rev_hi, k))
            rows.add(sid, 1.0, ET["review"], _lognormal(rng, 45.0, 0.6, k, 3.0), item=item, text=text)
        else:
            price = main["price"][idx]
            rows.add(sid, 1.0, ET["refund"], _lognormal(rng, 40.0, 0.6, k, 3.0), item=item, qty=main["qty"][idx],
                     price=price)

