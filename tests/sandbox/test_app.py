"""``sandbox.app.create_app``: an in-memory world of a seed already built in this process starts
from a copy of it, the same world, and each copy is a world of its own."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient

from sandbox.app import create_app

ADMIN = {"Authorization": "Bearer sandbox-admin-token"}


def test_a_second_world_of_a_seed_is_a_copy_of_its_own() -> None:
    first, second = TestClient(create_app(seed="demo")), TestClient(create_app(seed="demo"))
    roster = first.get("/_sandbox/roster").json()
    assert roster == second.get("/_sandbox/roster").json() and roster["rows"]
    members = first.get("/admin/v1/members", headers=ADMIN).json()
    assert members == second.get("/admin/v1/members", headers=ADMIN).json()

    def now(client: TestClient) -> datetime:
        return datetime.fromisoformat(client.get("/_sandbox/clock").json()["now"])

    assert first.post("/_sandbox/clock", json={"advance_days": 3}).status_code == 200
    assert now(first) - now(second) > timedelta(days=2)  # a world of its own
    third = TestClient(create_app(seed="demo"))  # copied from the seeded world, not the first
    assert abs(now(third) - now(second)) < timedelta(hours=1)
