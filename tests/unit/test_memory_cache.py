"""This container's own token cache: bounded in size and in how long an entry is trusted."""

from __future__ import annotations

from token_vending.memory_cache import MemoryCache
from token_vending.tokens import fingerprint

from .conftest import ACCESS_TOKEN, Clock, key, token

# --- memory cache -------------------------------------------------------------------------------------------


def test_memory_cache_miss() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    assert cache.get(key()) is None
    assert cache.token(key()) is None


def test_an_untrusted_entry_is_still_held() -> None:
    clock = Clock()
    cache = MemoryCache(trust_seconds=0, clock=clock)
    cache.put(key(), token())

    assert cache.get(key()) == (token(), False)
    assert cache.token(key()) == token()


def test_memory_cache_trusts_an_entry_for_trust_seconds() -> None:
    clock = Clock()
    cache = MemoryCache(trust_seconds=60, clock=clock)
    cached = token()
    cache.put(key(), cached)
    assert cache.get(key()) == (cached, True)
    clock.advance(59.9)
    assert cache.get(key()) == (cached, True)
    clock.advance(0.1)
    assert cache.get(key()) == (cached, False)  # still there, but re-check the table first
    clock.advance(3600)
    assert cache.get(key()) == (cached, False)


def test_memory_cache_renew_trust() -> None:
    clock = Clock()
    cache = MemoryCache(trust_seconds=60, clock=clock)
    cache.put(key(), token())
    clock.advance(61)
    cache.renew_trust(key())
    assert cache.get(key()) == (token(), True)
    clock.advance(60)
    assert cache.get(key()) == (token(), False)


def test_renew_trust_of_a_missing_entry_adds_nothing() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.renew_trust(key())
    assert cache.get(key()) is None


def test_memory_cache_put_replaces_and_resets_trust() -> None:
    clock = Clock()
    cache = MemoryCache(trust_seconds=60, clock=clock)
    cache.put(key(), token("old"))
    clock.advance(120)
    cache.put(key(), token("new"))
    assert cache.get(key()) == (token("new"), True)
    assert cache.token(key()) == token("new")


def test_memory_cache_keeps_keys_apart() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.put(key(), token("a"))
    cache.put(key(scope="cx.queue-calls"), token("b"))
    cache.put(key(credential_id="d" * 16), token("c"))
    assert cache.get(key()) == (token("a"), True)
    assert cache.get(key(scope="cx.queue-calls")) == (token("b"), True)
    assert cache.get(key(credential_id="d" * 16)) == (token("c"), True)


def test_drop_without_fingerprint_drops_whatever_is_there() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.put(key(), token())
    assert cache.drop(key()) is True
    assert cache.get(key()) is None
    assert cache.drop(key()) is False


def test_drop_with_the_matching_fingerprint() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.put(key(), token())
    assert cache.drop(key(), fingerprint(ACCESS_TOKEN)) is True
    assert cache.get(key()) is None


def test_drop_with_another_fingerprint_keeps_the_newer_token() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.put(key(), token("new-token"))
    assert cache.drop(key(), fingerprint("old-token")) is False
    assert cache.get(key()) == (token("new-token"), True)


def test_drop_of_a_missing_key() -> None:
    cache = MemoryCache(trust_seconds=60, clock=Clock())
    cache.put(key(), token())
    assert cache.drop(key(app="other"), fingerprint(ACCESS_TOKEN)) is False
    assert cache.token(key()) == token()


def test_memory_cache_is_bounded_and_evicts_least_recently_used() -> None:
    cache = MemoryCache(trust_seconds=60, max_entries=3, clock=Clock())
    keys = [key(app=f"app{i}") for i in range(5)]
    for k in keys[:3]:
        cache.put(k, token(k.app))
    cache.get(keys[0])  # used: app1 is now the least recently used
    cache.put(keys[3], token("app3"))
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0]) is not None
    cache.put(keys[2], token("app2-again"))  # a put also counts as use
    cache.put(keys[4], token("app4"))
    assert cache.get(keys[3]) is None
    assert {k.app for k in keys if cache.get(k)} == {"app0", "app2", "app4"}


def test_memory_cache_never_grows_past_its_bound() -> None:
    cache = MemoryCache(trust_seconds=60, max_entries=10, clock=Clock())
    for i in range(100):
        cache.put(key(app=f"app{i}"), token(f"t{i}"))
    assert [i for i in range(100) if cache.token(key(app=f"app{i}"))] == list(range(90, 100))
