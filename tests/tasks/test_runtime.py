"""How a run gets its runtime (``tasks.runtime``): bound for a block by ``use_runtime`` and seen
by ``this_runs_runtime`` in this context and in copies of it (``flows.batch.run_all``, the
intake's thread launcher), never in a bare new thread; without a binding, one runtime per
settings value. The Prefect side (flows, subflows, ``.submit()``) is
``tests/flows/test_runtime_binding.py``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from approvals.services import Services
from connectors.capabilities import MemberDirectory, has
from connectors.rate import PROCESS_LIMITS, SharedBucket, TokenBucket
from connectors.slack import SlackMessenger
from flows.batch import run_all
from intake.launch import thread_launcher
from ledger.rate_buckets import SqlBucketStore
from tasks.runtime import Runtime, this_runs_runtime, use_runtime
from tests.tasks.fakes import fake_runtime

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return fake_runtime(tmp_path, now=NOW)


@pytest.fixture
def settings_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``HANDOVER_*`` settings of this test only: the sandbox's defaults, a tmp home."""
    home = tmp_path / "from-settings"
    monkeypatch.setenv("HANDOVER_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # no .env or handover.toml of the checkout
    return home


def test_a_runtime_is_the_gates_services(rt: Runtime) -> None:
    assert isinstance(rt, Services)
    assert rt.clock() == NOW


def test_use_runtime_binds_for_the_block_only(rt: Runtime, tmp_path: Path) -> None:
    with use_runtime(rt) as bound:
        assert bound is rt and this_runs_runtime() is rt
        inner = fake_runtime(tmp_path, now=NOW)
        with use_runtime(inner):
            assert this_runs_runtime() is inner
        assert this_runs_runtime() is rt


def test_a_copy_of_the_context_sees_the_binding_a_bare_thread_does_not(
    rt: Runtime, settings_env: Path
) -> None:
    seen: list[Runtime] = []
    with use_runtime(rt):
        got = run_all([1, 2, 3], lambda _: this_runs_runtime(), workers=3, name="t", said=str)
        bare = threading.Thread(target=lambda: seen.append(this_runs_runtime()))
        bare.start()
        bare.join()
    assert got == [rt, rt, rt]
    # A thread started without a copy of the context has no binding: the settings' runtime.
    assert seen[0] is not rt and seen[0].ledger.url.endswith(str(settings_env / "ledger.db"))


def test_the_thread_launcher_runs_in_its_makers_context(rt: Runtime) -> None:
    with use_runtime(rt):
        launch = thread_launcher(lambda: this_runs_runtime())
    # Started later, from another thread (as the intake's request handlers do).
    refs: list[str] = []
    caller = threading.Thread(target=lambda: refs.extend([launch({}), launch({})]))
    caller.start()
    caller.join()
    assert [launch.wait(ref, timeout=10) for ref in refs] == [rt, rt]


def test_without_a_binding_one_runtime_per_settings(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = this_runs_runtime()
    assert this_runs_runtime() is first  # memoised: the ledger is not opened again
    assert first.ledger.url.endswith(str(settings_env / "ledger.db"))
    assert has(first.org, MemberDirectory)
    monkeypatch.setenv("HANDOVER_HOME", str(tmp_path / "elsewhere"))
    assert this_runs_runtime() is not first  # other settings, a runtime of their own


def test_a_runtime_from_settings_spends_the_deployments_shared_limits(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HANDOVER_RATE_LIMITS: ``shared`` (the default) in the ledger, ``process`` its own."""
    shared = Runtime.from_settings()
    admin = shared.org.admin.limiter  # type: ignore[attr-defined]
    assert isinstance(admin, SharedBucket) and admin.per_minute == 600
    assert isinstance(admin.store, SqlBucketStore) and admin.store.db is shared.ledger
    # Every connector of the runtime, Slack's buckets made at call time too.
    assert isinstance(shared.idp.http.limiter, SharedBucket)  # type: ignore[attr-defined]
    assert isinstance(shared.tickets.limiter, SharedBucket)  # type: ignore[attr-defined]
    messenger = shared.messenger
    assert isinstance(messenger, SlackMessenger)
    assert isinstance(messenger.limits.limiter_for("slack chat.update", "x"), SharedBucket)
    monkeypatch.setenv("HANDOVER_RATE_LIMITS", "process")
    own = Runtime.from_settings()
    assert isinstance(own.org.admin.limiter, TokenBucket)  # type: ignore[attr-defined]
    assert own.messenger.limits is PROCESS_LIMITS  # type: ignore[attr-defined]
    # The gate's services alone (the intake) follow the same setting.
    assert Services.from_settings().tickets.limiter is own.tickets.limiter  # type: ignore[union-attr]
