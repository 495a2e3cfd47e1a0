"""Sold-out facts in Redis: what POST /bookings reads to answer "sold out" without writing a
booking. PostgreSQL stays the truth; a fact only ever says "no seat left, and none can come back
by itself", and only for a short while (TTL_MS) unless a reservation run earns it again.

Keys, per show S:
- `boxoffice:sold-out:S`    JSON {"sold_out": what is sold out, "*" (a general admission show)
                            or category names; "queued": whether the show has a waiting room};
                            absent when nothing is sold out. Expires after TTL_MS.
- `boxoffice:seats-back:S`  a counter bumped by every commit that gives seats back (or opens a
                            hold's outcome again): the fence that keeps a late set from undoing
                            a clear.

Writers: the reservation run reads the counter before it takes the show's lock, decides, commits,
then sets the fact only if the counter has not moved (a release that committed after its reads
bumps it after that commit); a release bumps the counter and deletes the fact after its commit.
A set that lost the race is refused by the fence, or deleted by the release that bumps it.
"""
from __future__ import annotations

import json
from typing import NamedTuple

import redis

FACT_KEY = "boxoffice:sold-out:{show_id}"
FENCE_KEY = "boxoffice:seats-back:{show_id}"
WHOLE_SHOW = "*"  # a general admission show's one pool of seats
# How long a fact refuses without being earned again. Every refusal asks for a reservation run
# (one per kick interval), which earns it again or deletes it, so a refusing fact is renewed
# every kick interval or so; the TTL bounds a lost clear when no run comes (docs/lifecycle.md).
TTL_MS = 1_000
FENCE_TTL_MS = 86_400_000  # a fence outlives any run by far; an expired one only refuses a set

# KEYS: fact, fence. ARGV: the fence as read before the decision ('' if absent), the value, TTL ms.
_SET_IF_FENCE_HELD = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


class Fact(NamedTuple):
    sold_out: set[str | None]  # None: the whole general admission show
    queued: bool  # the show has a waiting room: a booking without an Admission-Token is refused 403


NONE = Fact(set(), False)


class SoldOutFacts:
    def __init__(self, client: redis.Redis):
        self.redis = client

    def fence(self, show_id: str) -> str:
        """The show's fence now: read before the reservation run takes the show's lock."""
        value = self.redis.get(FENCE_KEY.format(show_id=show_id))
        return value.decode() if value is not None else ""

    def publish(self, show_id: str, fact: Fact, fence: str) -> bool:
        """Set the show's fact to what a committed run found, unless a release bumped the fence
        since `fence` was read; nothing sold out deletes it (a clear is always safe). Returns
        whether a fact was set."""
        key = FACT_KEY.format(show_id=show_id)
        if not fact.sold_out:
            self.redis.delete(key)
            return False
        value = json.dumps({"sold_out": sorted(WHOLE_SHOW if name is None else name for name in fact.sold_out),
                            "queued": fact.queued})
        return bool(self.redis.eval(_SET_IF_FENCE_HELD, 2, key, FENCE_KEY.format(show_id=show_id),
                                    fence, value, TTL_MS))

    def seats_back(self, show_ids) -> None:
        """After a commit that may give seats of these shows back: bump each fence, drop each fact."""
        with self.redis.pipeline(transaction=True) as pipe:
            for show_id in show_ids:
                fence = FENCE_KEY.format(show_id=show_id)
                pipe.incr(fence)
                pipe.pexpire(fence, FENCE_TTL_MS)
                pipe.delete(FACT_KEY.format(show_id=show_id))
            pipe.execute()

    def read(self, show_id: str) -> Fact:
        """The show's fact (NONE: nothing is sold out)."""
        value = self.redis.get(FACT_KEY.format(show_id=show_id))
        if value is None:
            return NONE
        fact = json.loads(value)
        return Fact({None if name == WHOLE_SHOW else name for name in fact["sold_out"]}, fact["queued"])
