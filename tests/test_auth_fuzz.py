"""Random JSON at the sign-up and sign-in endpoints gets 4xx problems, never a 500."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
plausible_fields = st.fixed_dictionaries(
    {},
    optional={
        "email": json_values | st.emails(),
        "password": json_values | st.text(min_size=0, max_size=100),
        "full_name": json_values,
        "role": json_values | st.sampled_from(["admin", "student", "instructor", "root", ""]),
    },
)
bodies = st.one_of(
    json_values.map(json.dumps),
    plausible_fields.map(json.dumps),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/v1/auth/register", "/api/v1/auth/login"]), body=bodies)
async def test_random_bodies_get_only_client_errors(client: Any, path: str, body: str) -> None:
    response = await client.post(path, data=body.encode(), headers={"Content-Type": "application/json"})
    if response.status in (200, 201):  # hypothesis found a valid sign-up or sign-in: fine
        return
    assert 400 <= response.status < 500, (response.status, body, await response.text())
    assert response.content_type == "application/problem+json"
