"""Calendar arithmetic on epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ebbtide.streams.policy.calendar import to_ms


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_epoch_milliseconds_are_exact(moment: datetime) -> None:
    ms = to_ms(moment)
    assert datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms) <= moment
    assert moment - (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)) < timedelta(
        milliseconds=1
    )
