"""Issue 19 item 13: each job on a shared prefix keeps its own run history
(``_state/status-<job>.json``), starting from the file every job shared before, narrowed to its
own databases; on a real LocalStorage in tmp_path."""

from __future__ import annotations

from dataclasses import replace

from backup.config.model import PostgresConfig
from backup.job import history
from tests.unit.test_history import run, storage_at

SHOP = PostgresConfig(host="db", port="5432", databases=("shop",))
APP = PostgresConfig(host="db", port="5432", databases=("app",))


def _of(database: str, status: str):
    report = run(status)
    results = tuple(replace(r, database=database) for r in report.results)
    return replace(report, results=results)


def test_two_jobs_keep_their_own_streaks(tmp_path) -> None:
    storage = storage_at(tmp_path)
    for _ in range(3):
        history.record(storage, _of("app", "failure"), job=APP)
        history.record(storage, _of("shop", "success"), job=SHOP)
    app, shop = history.load(storage, APP), history.load(storage, SHOP)
    assert app.consecutive_failures == 3 and shop.consecutive_failures == 0
    assert set(app.databases) == {"app"} and set(shop.databases) == {"shop"}
    assert app.databases["app"].consecutive_failures == 3
    assert history.state_key(APP) != history.state_key(SHOP)
    keys = sorted(o.key for o in storage.list("_state/"))
    assert keys == sorted([history.state_key(APP), history.state_key(SHOP)])
    assert history.state_key(PostgresConfig(host="other", port="5432", databases=("app",))) != (
        history.state_key(APP)
    )


def test_a_job_starts_from_the_shared_history_narrowed_to_its_databases(tmp_path) -> None:
    storage = storage_at(tmp_path)
    history.record(storage, _of("shop", "failure"))  # the old, shared file
    history.record(storage, _of("app", "failure"))
    legacy = history.load(storage)
    assert set(legacy.databases) == {"shop", "app"}
    started = history.load(storage, SHOP)
    assert set(started.databases) == {"shop"}
    assert started.databases["shop"].consecutive_failures == 1
    assert all(r.results[0]["database"] == "shop" for r in started.runs)
    after = history.record(storage, _of("shop", "failure"), job=SHOP)
    assert after.databases["shop"].consecutive_failures == 2
    # the shared file is left as it was; the job's own file is read from now on
    assert history.load(storage) == legacy
    assert history.load(storage, SHOP) == after


def test_an_unreadable_shared_history_does_not_stop_a_jobs_own(tmp_path) -> None:
    storage = storage_at(tmp_path)
    (tmp_path / "_state" / "status.json").mkdir(parents=True)  # cannot be read
    assert history.load(storage, SHOP) == history.State()
    written = history.record(storage, _of("shop", "failure"), job=SHOP)
    assert history.load(storage, SHOP) == written
    assert (tmp_path / "_state" / "status.json").is_dir()
