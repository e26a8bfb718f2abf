"""This container's own token cache: bounded in size and in how long an entry is trusted without the table."""

from __future__ import annotations

import pytest
from token_vending.memory_cache import MemoryCache
from token_vending.tokens import TokenKey, fingerprint

from .conftest import ACCESS_TOKEN, Clock, key, token

TRUST = 60


def cache(clock: Clock | None = None, max_entries: int = 1024) -> MemoryCache:
    return MemoryCache(trust_seconds=TRUST, max_entries=max_entries, clock=clock or Clock())


def test_an_entry_is_trusted_for_trust_seconds_after_a_put_or_a_renewal_then_held_untrusted() -> None:
    clock = Clock()
    memory = cache(clock)
    assert memory.get(key()) is None and memory.token(key()) is None  # a miss
    memory.put(key(), token())

    clock.advance(TRUST - 0.1)
    assert memory.get(key()) == (token(), True)
    clock.advance(0.1)
    assert memory.get(key()) == (token(), False)  # still held: the vend re-checks the table before serving it
    assert memory.token(key()) == token()

    memory.renew_trust(key())  # the table still holds it
    clock.advance(TRUST - 0.1)
    assert memory.get(key()) == (token(), True)
    clock.advance(0.1)
    assert memory.get(key()) == (token(), False)


def test_a_put_replaces_the_token_and_its_trust() -> None:
    clock = Clock()
    memory = cache(clock)
    memory.put(key(), token("old"))
    clock.advance(2 * TRUST)

    memory.put(key(), token("new"))

    assert memory.get(key()) == (token("new"), True)


def test_renewing_the_trust_of_a_missing_entry_adds_nothing() -> None:
    memory = cache()
    memory.renew_trust(key())
    assert memory.get(key()) is None


@pytest.mark.parametrize("other", [key(app="other"), key(scope="cx.queue-calls"), key(credential_id="d" * 16),
                                   key()._replace(holder="arn:aws:sts::111122223333:assumed-role/other")],
                         ids=["app", "scope", "credentials", "holder"])
def test_keys_that_differ_in_any_part_hold_their_own_tokens(other: TokenKey) -> None:
    memory = cache()
    memory.put(key(), token("a"))
    memory.put(other, token("b"))

    assert memory.token(key()) == token("a")
    assert memory.token(other) == token("b")
    assert memory.drop(other)
    assert memory.token(key()) == token("a")


def test_a_drop_with_a_fingerprint_drops_only_that_token_and_says_whether_it_did() -> None:
    memory = cache()
    memory.put(key(), token())
    assert memory.drop(key(), fingerprint("an-older-token")) is False  # a newer token is kept
    assert memory.token(key()) == token()
    assert memory.drop(key(), fingerprint(ACCESS_TOKEN)) is True
    assert memory.get(key()) is None
    assert memory.drop(key(), fingerprint(ACCESS_TOKEN)) is False  # nothing left to drop


def test_a_drop_without_a_fingerprint_drops_whatever_is_held() -> None:
    memory = cache()
    memory.put(key(), token())
    assert memory.drop(key()) is True
    assert memory.get(key()) is None
    assert memory.drop(key()) is False


def test_the_cache_never_grows_past_its_bound_and_evicts_the_least_recently_used() -> None:
    memory = cache(max_entries=3)
    keys = [key(app=f"app{i}") for i in range(6)]
    for k in keys[:3]:
        memory.put(k, token(k.app))
    memory.get(keys[0])  # a get counts as use: app1 is now the least recently used
    memory.put(keys[3], token("app3"))
    memory.put(keys[2], token("app2-again"))  # so does a put: app0 is now the least recently used
    memory.put(keys[4], token("app4"))
    memory.put(keys[5], token("app5"))

    assert [k.app for k in keys if memory.token(k)] == ["app2", "app4", "app5"]
