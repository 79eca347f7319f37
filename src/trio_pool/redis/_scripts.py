"""The Lua scripts the consumer runs, and the parsing of their replies.

Each script is one round trip and runs atomically in Redis:

* `CLAIM`: ``XAUTOCLAIM`` plus each claimed entry's delivery count (which
  ``XAUTOCLAIM`` increments but does not return);
* `RENEW`: resets the idle time of the entries this consumer still owns
  (``XCLAIM ... JUSTID`` does not count a delivery; ``RETRYCOUNT`` puts back
  the count a claim of its own entry raised), and names those another
  consumer took over meanwhile;
* `DEAD_LETTER`: ``XADD`` to the dead-letter stream (the entry's own fields,
  byte for byte) and ``XACK`` on the source, together, if the entry is still
  this consumer's (a retry also recognises the work of its own lost reply).
"""

from __future__ import annotations

from typing import Final

import attrs

from ._payload import raw, text

CLAIM: Final = """
local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                         'COUNT', ARGV[5])
local entries, counts = {}, {}
for _, entry in ipairs(reply[2]) do
  if entry then
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
    if pending[1] then
      entries[#entries + 1] = entry
      counts[#counts + 1] = pending[1][4]
    end
  end
end
return {reply[1], entries, counts}
"""
"""KEYS: stream. ARGV: group, consumer, min idle ms, start id, count.
Returns {next start id, {{id, {field, value, ...}}, ...}, {deliveries, ...}}."""

RENEW: Final = """
local lost = {}
for i = 3, #ARGV - 1, 2 do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i],
               'RETRYCOUNT', ARGV[i + 1], 'JUSTID')
  else
    local why = 'acked'
    if not redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])[1] then
      why = 'deleted'
    elseif pending[1] then
      why = 'taken:' .. pending[1][2]
    end
    lost[#lost + 1] = ARGV[i]
    lost[#lost + 1] = why
  end
end
return lost
"""
"""KEYS: stream. ARGV: group, consumer, then an id and a delivery count for
each entry. Resets the idle time of each entry still pending with this
consumer and sets its delivery count (which an ``XAUTOCLAIM`` of this
consumer's own entry raised, though the entry was not delivered again).
Returns, flat, each id that is not ours any more and why: ``deleted`` (not
in the stream: XDEL, XTRIM), ``taken:<consumer>`` (pending with another
consumer), or ``acked`` (acknowledged, by a consumer that took it over or
by anyone)."""

_PREPEND: Final = 50
"""Items `DEAD_LETTER`'s ``xadd`` puts on the Lua stack per call."""

DEAD_LETTER: Final = """
-- XADD of every item, also past unpack's limit (8,000 values on the Lua
-- stack): tail calls that prepend _PREPEND items at a time to their varargs.
local function xadd(key, items)
  if #items <= 7000 then
    return redis.call('XADD', key, '*', unpack(items))
  end
  local function call(i, ...)
    if i < 1 then
      return redis.call('XADD', key, '*', ...)
    end
    if i >= _PREPEND then
      return call(i - _PREPEND, ITEMS)
    end
    return call(i - 1, items[i], ...)
  end
  return call(#items)
end

-- A dead letter of the last ARGV[4] ms with every one of this call's
-- dead_letter.* fields: the work of an earlier call whose reply was lost.
local function moved_before()
  local now = redis.call('TIME')
  local since = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
                - tonumber(ARGV[4])
  for _, letter in ipairs(redis.call('XREVRANGE', KEYS[2], '+', math.max(since, 0))) do
    local fields = {}
    for i = 1, #letter[2] - 1, 2 do
      fields[letter[2][i]] = letter[2][i + 1]
    end
    local same = true
    for i = 6, 4 + tonumber(ARGV[5]), 2 do
      if fields[ARGV[i]] ~= ARGV[i + 1] then
        same = false
        break
      end
    end
    if same then
      return true
    end
  end
  return false
end

local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not pending[1] or pending[1][2] ~= ARGV[2] then
  if not pending[1] and ARGV[4] ~= '0' and moved_before() then
    return 1
  end
  return 0
end
local meta = tonumber(ARGV[5])
local own
local entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
if entry[1] then
  own = entry[1][2]
else
  own = {}
  for i = 6 + meta, #ARGV do
    own[#own + 1] = ARGV[i]
  end
end
local letter = {}
for i = 1, #own - 1, 2 do
  if string.sub(own[i], 1, 12) ~= 'dead_letter.' then
    letter[#letter + 1] = own[i]
    letter[#letter + 1] = own[i + 1]
  end
end
for i = 6, 5 + meta do
  letter[#letter + 1] = ARGV[i]
end
xadd(KEYS[2], letter)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
""".replace("_PREPEND", str(_PREPEND)).replace(
    "ITEMS",
    ", ".join(f"items[i - {back}]" for back in range(_PREPEND - 1, -1, -1)) + ", ...",
)
"""KEYS: stream, dead-letter stream. ARGV: group, consumer, id, a lookback in
ms, the number n of ``dead_letter.*`` arguments, those n, then the entry's
fields as the consumer holds them. The dead letter copies the entry's fields
from the stream, byte for byte (the consumer's copy only if the entry was
deleted), however many there are. Returns 1 when moved, 0 when the entry is
not this consumer's any more. A retry (lookback not 0) that finds the entry
settled returns 1 too if a dead letter of the last lookback ms has all its
``dead_letter.*`` fields: an earlier call of its own moved it, and its reply
was lost."""


@attrs.frozen
class Claimed:
    """One entry taken over by `CLAIM`."""

    id: str
    fields: tuple[tuple[bytes, bytes], ...]
    deliveries: int


def _text(value: object) -> str:
    if isinstance(value, (str, bytes)):
        return text(value)
    raise TypeError(f"unexpected value in a script's reply: {value!r}")


def _items(value: object) -> list[object]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"unexpected reply from a script: {value!r}")
    items: list[object] = list(value)  # pyright: ignore[reportUnknownArgumentType]
    return items


def _raw(value: object) -> bytes:
    if isinstance(value, (str, bytes)):
        return raw(value)
    raise TypeError(f"unexpected value in a script's reply: {value!r}")


def _pairs(flat: object) -> tuple[tuple[bytes, bytes], ...]:
    items = _items(flat)
    return tuple(
        (_raw(items[i]), _raw(items[i + 1])) for i in range(0, len(items) - 1, 2)
    )


def parse_claim(reply: object) -> tuple[str, list[Claimed]]:
    """The next start id and the claimed entries, from `CLAIM`'s reply.

    Raises:
        TypeError: the reply is not of the expected shape.
    """
    parts = _items(reply)
    if len(parts) != 3:
        raise TypeError(f"unexpected reply to the claim script: {reply!r}")
    cursor, entries, counts = parts
    claimed: list[Claimed] = []
    for entry, count in zip(_items(entries), _items(counts), strict=True):
        identifier, flat = _items(entry)
        if not isinstance(count, int):
            raise TypeError(f"unexpected delivery count: {count!r}")
        claimed.append(Claimed(_text(identifier), _pairs(flat), count))
    return _text(cursor), claimed


def parse_lost(reply: object) -> list[tuple[str, str]]:
    """(id, why) of each entry that is not ours any more, from `RENEW`'s reply."""
    items = [_text(item) for item in _items(reply)]
    return list(zip(items[::2], items[1::2], strict=True))
