"""Sealed values: the token format, deterministic sealing, and refusals."""

from __future__ import annotations

import os

import pytest

from ebbtide.runtime.tokens import (
    MAX_TOKEN,
    MAX_VALUE,
    DataKey,
    Shredded,
    TokenError,
    is_token,
    key_id_of,
)
from ebbtide.sinks.base.opening import opened
from ebbtide.tools.revealing import reveal, reveal_record_id, reveal_text


def key(subject: str = "cust-1", key_id: str = "0123456789abcdef") -> DataKey:
    return DataKey(subject, key_id, os.urandom(32))


class Keys:
    """An in-memory key store: the keys it holds; any other is shredded."""

    def __init__(self, *held: DataKey) -> None:
        self.held = {(k.subject_id, k.key_id): k for k in held}

    def find(self, subject_id: str, key_id: str) -> DataKey:
        try:
            return self.held[(subject_id, key_id)]
        except KeyError:
            raise Shredded(f"key {key_id} is shredded") from None


def test_a_value_round_trips_and_its_token_names_the_key_and_nothing_of_the_value() -> None:
    k = key()
    token = k.seal("ola.nordmann@example.no")
    assert token.startswith("enc:v1:0123456789abcdef:") and is_token(token)
    assert key_id_of(token) == "0123456789abcdef"
    assert "nordmann" not in token and "example" not in token
    assert k.open(token) == "ola.nordmann@example.no"
    assert k.open(k.seal("Åse Ødegård")) == "Åse Ødegård"


def test_sealing_is_deterministic_per_key_and_differs_across_keys() -> None:
    k, other = key(), key()
    assert k.seal("row-42") == k.seal("row-42")
    assert k.seal("row-42") != k.seal("row-43")
    assert k.seal("row-42") != other.seal("row-42")  # same id, another secret
    assert k.seal("row-42") != DataKey("cust-2", k.key_id, k.secret).seal("row-42")  # another subject


def test_a_domain_keeps_its_top_level_domain_in_clear_and_bound() -> None:
    k = key()
    token = k.seal("kari-hansen.no", domain=True)
    assert token.endswith(".no") and "kari" not in token
    assert k.open(token) == "kari-hansen.no"
    with pytest.raises(TokenError):
        k.open(token[: -len(".no")] + ".se")  # the TLD is associated data: changing it is refused
    assert not k.seal("row-42", domain=True).count(".")  # not a domain name: no suffix


def test_a_wrong_key_a_changed_byte_and_a_non_token_are_refused() -> None:
    k = key()
    token = k.seal("row-42")
    with pytest.raises(TokenError, match="sealed with key"):
        key(key_id="fedcba9876543210").open(token)
    with pytest.raises(TokenError, match="does not open"):
        DataKey(k.subject_id, k.key_id, os.urandom(32)).open(token)
    body = token.rsplit(":", 1)[1]
    changed = token[: -len(body)] + ("A" if body[0] != "A" else "B") + body[1:]
    with pytest.raises(TokenError):
        k.open(changed)
    with pytest.raises(TokenError, match="not a sealed value"):
        k.open("row-42")


def test_the_longest_value_fits_the_workers_limit_and_a_longer_one_is_refused_by_size() -> None:
    k = key()
    longest = "x" * (MAX_VALUE - 4) + ".com"
    assert len(k.seal(longest, domain=True)) <= MAX_TOKEN
    assert len(k.seal("y" * MAX_VALUE)) <= MAX_TOKEN
    with pytest.raises(ValueError, match="bytes, over the") as refused:
        k.seal("secret-" + "z" * 400)
    assert "secret" not in str(refused.value)


def test_a_shredded_key_reads_shredded_and_a_sink_cannot_open_its_command() -> None:
    k = key()
    rid = f"customer_db/client/{k.seal('42')}"
    assert reveal_record_id("cust-1", rid, Keys(k)) == "customer_db/client/42"
    assert reveal_record_id("cust-1", rid, Keys()) == "customer_db/client/shredded"
    assert reveal("cust-1", "plain-ref", Keys()) == "plain-ref"
    command = {"subject_id": "cust-1", "record_key": k.seal("42"), "store": "customer_db"}
    assert opened(command, Keys(k)) == {**command, "record_key": "42", "sealed_key": command["record_key"]}
    with pytest.raises(Shredded):
        opened(command, Keys())
    unsealed = {**command, "record_key": "42"}
    assert opened(unsealed, Keys()) is unsealed


def test_a_text_has_each_token_revealed_or_shredded() -> None:
    k, gone = key(), key(key_id="fedcba9876543210")
    text = f"customer_db/client/{k.seal('42')}: ref {k.seal('kari.no', domain=True)}; old {gone.seal('7')}."
    assert reveal_text("cust-1", text, Keys(k)) == "customer_db/client/42: ref kari.no; old shredded."
