"""The waiting room's fast index in Redis (SPEC §9): what a join or a status poll reads, so neither
touches PostgreSQL. It is only an index: PostgreSQL holds every entry (models/waiting_room.py),
and an index that Redis lost (a restart that came back empty) is rebuilt from it.

Keys, per show S and entry E:
- `wq:E`         hash: s (show), c (customer), st (WAITING, ADMITTED or LEFT), o (queue order score,
                 once known), u (admitted until, epoch seconds)
- `wq:S:c`       hash: customer -> entry
- `wq:S:order`   sorted set of every entry with a score: its position is its rank + 1
- `wq:S:waiting` sorted set of the entries still waiting: how many are ahead is its rank
- `wq:S:early`   set of the early joiners before the draw (their order is not drawn yet)
- `wq:S:rate`    the room's admit_per_minute, for the estimated wait
- `wq:S:built`   present once the index was built from PostgreSQL since Redis last lost it

Writers: a join publishes its entry after PostgreSQL committed it, without overwriting a state
an admission or a leave published meanwhile (the join script sets `st` only if absent); the
admission job and a leave publish their new state after their commit; a rebuild writes
everything under the room's row lock, so no admission commits between its read and its write.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis

PREFIX = "wq"

# KEYS: entry, customers, order, waiting, early. ARGV: show, customer, entry, score ("" before the
# draw), state. Returns [position rank, ahead rank, state, score, admitted until].
_JOIN = """
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 's', ARGV[1], 'c', ARGV[2])
if redis.call('HSETNX', KEYS[1], 'st', ARGV[5]) == 1 then
  if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[1], 'o', ARGV[4])
    redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
    if ARGV[5] == 'WAITING' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3]) end
  elseif ARGV[5] == 'WAITING' then
    redis.call('SADD', KEYS[5], ARGV[3])
  end
end
local entry = redis.call('HMGET', KEYS[1], 'st', 'o', 'u')
return {redis.call('ZRANK', KEYS[3], ARGV[3]), redis.call('ZRANK', KEYS[4], ARGV[3]), entry[1], entry[2], entry[3],
        redis.call('GET', 'wq:' .. ARGV[1] .. ':rate')}
"""

# KEYS: entry. Returns false when the entry is not indexed, else
# [show, customer, state, score, admitted until, position rank, ahead rank, rate].
_STATUS = """
local entry = redis.call('HMGET', KEYS[1], 's', 'c', 'st', 'o', 'u')
if not entry[1] or not entry[3] then return false end
local id = string.sub(KEYS[1], 4)
local order, ahead = false, false
if entry[4] then
  order = redis.call('ZRANK', 'wq:' .. entry[1] .. ':order', id)
  if entry[3] == 'WAITING' then ahead = redis.call('ZRANK', 'wq:' .. entry[1] .. ':waiting', id) end
end
return {entry[1], entry[2], entry[3], entry[4], entry[5], order, ahead, redis.call('GET', 'wq:' .. entry[1] .. ':rate')}
"""


# The rebuild, server-side: a chunk of entries per call, so 100,000 entries are a few dozen calls
# rather than 400,000 commands packed one by one. KEYS: order, waiting, early, customers.
# ARGV: show, then per entry: id, customer, state, score ("" before the draw), until ("" if none).
_REBUILD = """
local show = ARGV[1]
for i = 2, #ARGV, 5 do
  local id, customer, state, score, untl = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = 'wq:' .. id
  redis.call('HSET', key, 's', show, 'c', customer, 'st', state)
  if score ~= '' then
    redis.call('HSET', key, 'o', score)
    redis.call('ZADD', KEYS[1], score, id)
    if state == 'WAITING' then redis.call('ZADD', KEYS[2], score, id) else redis.call('ZREM', KEYS[2], id) end
  elseif state == 'WAITING' then
    redis.call('SADD', KEYS[3], id)
  end
  if untl ~= '' then redis.call('HSET', key, 'u', untl) end
  redis.call('HSET', KEYS[4], customer, id)
end
return (#ARGV - 1) / 5
"""


@dataclass(frozen=True)
class Indexed:
    """What the index knows of an entry."""
    show_id: str
    customer_id: str
    state: str
    score: int | None
    admitted_until: float | None
    position: int | None  # 1-based place in the queue order, once drawn
    ahead: int | None     # entries still waiting ahead of it
    admit_per_minute: int | None


def _key(*parts: str) -> str:
    return ":".join((PREFIX, *parts))


def entry_key(entry_id: str) -> str:
    return _key(entry_id)


class QueueIndex:
    def __init__(self, client: redis.Redis):
        self.redis = client
        self._join = client.register_script(_JOIN)
        self._status = client.register_script(_STATUS)
        self._rebuild = client.register_script(_REBUILD)

    # --- reads ------------------------------------------------------------------------------------

    def entry_of(self, show_id: str, customer_id: str) -> str | None:
        entry_id = self.redis.hget(_key(show_id, "c"), customer_id)
        return entry_id.decode() if entry_id is not None else None

    def status(self, entry_id: str) -> Indexed | None:
        row = self._status(keys=[entry_key(entry_id)])
        if not row:
            return None
        show, customer, state, score, until, order, ahead, rate = row
        return Indexed(show.decode(), customer.decode(), state.decode(), _int(score), _float(until),
                       None if order is None else order + 1, ahead, _int(rate))

    def built(self, show_id: str) -> bool:
        return bool(self.redis.exists(_key(show_id, "built")))

    def waiting(self, show_id: str) -> int:
        return self.redis.zcard(_key(show_id, "waiting")) + self.redis.scard(_key(show_id, "early"))

    # --- writes -----------------------------------------------------------------------------------

    def publish_join(self, show_id: str, customer_id: str, entry_id: str, score: int | None, state: str) -> Indexed:
        order, ahead, st, o, until, rate = self._join(
            keys=[entry_key(entry_id), _key(show_id, "c"), _key(show_id, "order"), _key(show_id, "waiting"),
                  _key(show_id, "early")],
            args=[show_id, customer_id, entry_id, "" if score is None else score, state])
        return Indexed(show_id, customer_id, st.decode(), _int(o), _float(until),
                       None if order is None else order + 1, ahead, _int(rate))

    def publish_admitted(self, show_id: str, admitted: list[tuple[str, float]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for entry_id, until in admitted:
            pipe.hset(entry_key(entry_id), mapping={"s": show_id, "st": "ADMITTED", "u": until})
        if admitted:
            pipe.zrem(_key(show_id, "waiting"), *(entry_id for entry_id, _ in admitted))
        pipe.execute()

    def publish_left(self, show_id: str, entry_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(entry_key(entry_id), mapping={"s": show_id, "st": "LEFT"})
        pipe.zrem(_key(show_id, "waiting"), entry_id)
        pipe.srem(_key(show_id, "early"), entry_id)
        pipe.execute()

    def publish_rate(self, show_id: str, admit_per_minute: int) -> None:
        self.redis.set(_key(show_id, "rate"), admit_per_minute)

    def publish_all(self, show_id: str, entries, *, drawn: bool, admit_per_minute: int, chunk: int = 2000) -> None:
        """Write the whole index of a show from its entries, read from PostgreSQL under the room's
        lock: (id, customer, state, score, admitted until epoch or None). Marks it built."""
        keys = [_key(show_id, "order"), _key(show_id, "waiting"), _key(show_id, "early"), _key(show_id, "c")]
        if drawn:
            self.redis.delete(_key(show_id, "early"))
        args = [show_id]
        for entry_id, customer_id, state, score, until in entries:
            args += [entry_id, customer_id, state, "" if score is None else score, "" if until is None else until]
            if len(args) > chunk * 5:
                self._rebuild(keys=keys, args=args)
                args = [show_id]
        if len(args) > 1:
            self._rebuild(keys=keys, args=args)
        self.redis.set(_key(show_id, "rate"), admit_per_minute)
        self.redis.set(_key(show_id, "built"), 1)

    def forget(self, show_id: str) -> None:
        """The index of this show is no longer trusted (a publish failed half-way): the next
        admission tick rebuilds it."""
        self.redis.delete(_key(show_id, "built"))


def _int(value) -> int | None:
    return None if value is None or value is False else int(value)


def _float(value) -> float | None:
    return None if value is None or value is False else float(value)
