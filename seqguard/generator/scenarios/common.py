"""What every attack scenario shares: when its sessions start and when a fresh attacker account signs up."""

from __future__ import annotations

import numpy as np

from seqguard.generator.config import DAY
from seqguard.generator.helpers import _expand, _lognormal
from seqguard.generator.world import _World


def _attack_starts(w: _World, users: np.ndarray, n_sess: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attack sessions spread over the whole period with the normal diurnal rhythm: (owner, user, start).

    Times are drawn first and a fresh account's sign-up is put shortly before its first attack. Drawing sign-ups first
    and activity after them would pile attacks up towards the end of the period, which a by-day split would notice.
    """
    owner, _ = _expand(n_sess)
    user = users[owner]
    start = w.diurnal_times(np.full(len(user), w.start), np.full(len(user), w.end))
    first = np.full(len(users), np.inf)
    np.minimum.at(first, owner, start)
    fresh = w.users.fresh[users]
    lead = _lognormal(w.rng, 900.0, 1.2, len(users), 30.0, 3 * DAY)
    join = np.maximum(first - lead, w.start)
    w.users.join[users[fresh]] = join[fresh]
    w.users.fresh[users] = fresh & (join > w.start)
    return owner, user, start

