"""Configuration parsing, key naming and manifests: pure code, plain tests."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from backup import manifest
from backup.config import CodecConfig, Destination, Secret, load
from backup.errors import ConfigError, IntegrityError
from backup.log import RedactingFilter
from backup.stream.codec import open_decoder, open_encoder


def test_defaults():
    config = load({"PGDATABASE": "shop"})
    assert config.postgres.databases == ("shop",)
    assert config.storage.destinations == ("file://./backups",)
    assert config.codec.compression == "zstd"
    assert (config.retention.days, config.retention.keep_min) == (30, 3)
    assert config.notify.alert_after_failures == 2
    assert (config.log.format, config.log.level) == ("text", "INFO")


def test_b2_bucket_is_the_default_destination():
    config = load({"B2_BUCKET_NAME": "acme", "B2_KEY_ID": "k", "B2_APPLICATION_KEY": "s"})
    assert config.storage.destinations == ("b2://acme/backups/postgresql",)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "BACKUP_COMPRESSION": "lz4",
                "BACKUP_RETENTION_DAYS": "-1",
                "BACKUP_KEEP_MIN": "x",
                "BACKUP_DESTINATIONS": "b2://bucket/p",
                "TELEGRAM_BOT_TOKEN": "t",
                "NOTIFY_ON": "sometimes",
                "BACKUP_AGE_RECIPIENTS": "not-a-key",
            }
        )
    text = "\n".join(caught.value.problems)
    for name in (
        "BACKUP_COMPRESSION",
        "BACKUP_RETENTION_DAYS",
        "BACKUP_KEEP_MIN",
        "B2_KEY_ID",
        "B2_APPLICATION_KEY",
        "ADMIN_USER_ID",
        "NOTIFY_ON",
        "BACKUP_AGE_RECIPIENTS",
    ):
        assert name in text, name
    assert caught.value.exit_code == 2


def test_database_url_is_split_into_libpq_variables():
    config = load({"DATABASE_URL": "postgresql://app:p%40ss@db.internal:6543/shop?sslmode=require"})
    pg = config.postgres
    assert (pg.host, pg.port, pg.user, pg.database) == ("db.internal", "6543", "app", "shop")
    env = pg.libpq_env()
    assert env["PGPASSWORD"] == "p@ss" and env["PGSSLMODE"] == "require"
    assert "p@ss" not in repr(config)


def test_secret_files(tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    config = load({"PGPASSWORD_FILE": str(tmp_path / "pw")})
    assert config.postgres.password == Secret("from-file")
    assert str(config.postgres.password) == "***"
    with pytest.raises(ConfigError, match="PGPASSWORD and PGPASSWORD_FILE"):
        load({"PGPASSWORD": "a", "PGPASSWORD_FILE": str(tmp_path / "pw")})


def test_databases_all_and_lists():
    assert load({"BACKUP_DATABASES": "all"}).postgres.all_databases
    assert load({"BACKUP_DATABASES": "a, b,a"}).postgres.databases == ("a", "b")
    with pytest.raises(ConfigError):
        load({"BACKUP_DATABASES": "all,shop"})


@pytest.mark.parametrize(
    ("url", "scheme", "bucket", "prefix"),
    [
        ("s3://bucket/some/prefix/", "s3", "bucket", "some/prefix"),
        ("b2://bucket", "b2", "bucket", ""),
        ("file:///var/backups", "file", "", "/var/backups"),
        ("file://./backups", "file", "", "./backups"),
    ],
)
def test_destinations(url, scheme, bucket, prefix):
    parsed = Destination.parse(url)
    assert (parsed.scheme, parsed.bucket, parsed.prefix) == (scheme, bucket, prefix)


def test_destination_refusals():
    for url in ("ftp://x/y", "s3://", "s3://key:secret@bucket/p"):
        with pytest.raises(ConfigError):
            Destination.parse(url)


def test_key_scheme_and_name_encoding():
    moment = datetime(2025, 11, 10, 3, 0, 0, tzinfo=UTC)
    assert manifest.object_key("shop", moment, ".zst") == "shop/shop-20251110T030000Z.dump.zst"
    assert manifest.manifest_key("shop", moment) == "shop/shop-20251110T030000Z.manifest.json"
    assert manifest.object_key(None, moment, ".zst.age") == (
        "_globals/globals-20251110T030000Z.sql.zst.age"
    )
    assert manifest.encode_name("odd name/é") == "odd%20name%2F%C3%A9"
    assert manifest.encode_name("_state") == "%5Fstate"  # never collides with _state/_globals
    assert manifest.encode_name("a.b-c_d") == "a.b-c_d"


def test_manifest_round_trip_and_damage():
    moment = datetime(2025, 11, 10, 3, 0, 0, tzinfo=UTC)
    record = manifest.Manifest(
        name="shop-20251110T030000Z",
        kind="database",
        database="shop",
        created_at=moment,
        finished_at=moment,
        object_key="shop/shop-20251110T030000Z.dump.zst",
        size_bytes=10,
        sha256="0" * 64,
        compression="zstd",
        encryption=None,
        pg_dump_version="15.18",
        server_version="15.18",
        duration_s=1.0,
        job_version="0.1.0",
    )
    assert manifest.Manifest.from_json(record.to_json()) == record
    with pytest.raises(IntegrityError):
        manifest.Manifest.from_json(b"{not json")
    with pytest.raises(IntegrityError, match="newer"):
        manifest.Manifest.from_json(b'{"format_version": 99}')


def test_redaction():
    redactor = RedactingFilter(["hunter2-secret"])
    line = (
        "password=abc postgresql://app:pw@db/x token hunter2-secret "
        "https://api.telegram.org/bot123456:ABCdefGhIJKlmnOPQrstUVwxyz/sendMessage "
        "AGE-SECRET-KEY-1QQQQQQQQQQQQQQ"
    )
    out = redactor.redact(line)
    for secret in ("abc", ":pw@", "hunter2-secret", "ABCdefGhIJKlmnOPQrstUVwxyz", "QQQQ"):
        assert secret not in out


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_codec_round_trip_and_truncation(compression):
    data = b"".join(i.to_bytes(4, "big") * 64 for i in range(20000))

    class Sink(io.BytesIO):
        def close(self) -> None:  # the encoder closes its sink; keep the bytes
            pass

    sink = Sink()
    encoder = open_encoder(CodecConfig(compression=compression), sink)
    for start in range(0, len(data), 100_000):
        encoder.write(data[start : start + 100_000])
    encoder.close()
    stored = sink.getvalue()
    decoder = open_decoder(io.BytesIO(stored), compression, False, CodecConfig())
    assert b"".join(iter(lambda: decoder.read(65536), b"")) == data
    if compression != "none":
        damaged = open_decoder(
            io.BytesIO(stored[: len(stored) // 2]), compression, False, CodecConfig()
        )
        with pytest.raises(IntegrityError):
            while damaged.read(65536):
                pass


@pytest.mark.parametrize("threads", [0, 2])
def test_zstd_cut_anywhere_is_refused_and_reads_stay_bounded(threads):
    """A stream cut at any point is an IntegrityError, not a short archive; and a very
    compressible stream comes out in bounded reads (1 MiB of blanks is not one huge read)."""
    data = b"".join(bytes([i % 251]) * 50 + b" " * (i * 37 % 9000) for i in range(400))
    data += b" " * 50_000_000

    class Sink(io.BytesIO):
        def close(self) -> None:
            pass

    sink = Sink()
    encoder = open_encoder(CodecConfig(compression="zstd", threads=threads), sink)
    for start in range(0, len(data), 1 << 20):
        encoder.write(data[start : start + (1 << 20)])
    encoder.close()
    stored = sink.getvalue()
    decoder = open_decoder(io.BytesIO(stored), "zstd", False, CodecConfig())
    reads = list(iter(lambda: decoder.read(1 << 20), b""))
    assert b"".join(reads) == data
    assert max(len(r) for r in reads) <= 1 << 20
    for cut in sorted({1, 4, 5, 9, len(stored) // 3, len(stored) - 4, len(stored) - 1}):
        damaged = open_decoder(io.BytesIO(stored[:cut]), "zstd", False, CodecConfig())
        with pytest.raises(IntegrityError):
            while damaged.read(1 << 20):
                pass


def test_an_aborted_encrypting_encoder_leaves_no_thread():
    import threading

    import pyrage

    recipient = str(pyrage.x25519.Identity.generate().to_public())
    # The threads started here, by identity: a count would also see other tests' threads end.
    before = set(threading.enumerate())
    sink = io.BytesIO()
    encoder = open_encoder(CodecConfig(compression="zstd", age_recipients=(recipient,)), sink)
    encoder.write(b"some dump bytes" * 10_000)
    encoder.abort()

    def started_here() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before]

    for _ in range(50):
        if not started_here():
            break
        threading.Event().wait(0.05)
    assert started_here() == []


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("6h", 21600.0), ("1.5h", 5400.0)],
)
def test_durations_take_seconds_or_a_unit(raw: str, seconds: float) -> None:
    config = load({"PGDATABASE": "shop", "BACKUP_TIMEOUT": raw, "BACKUP_LOCK_WAIT_TIMEOUT": raw})
    assert (config.timeout_s, config.lock_wait_timeout_s) == (seconds, seconds)
    assert config.orphan_min_age_s > config.timeout_s


@pytest.mark.parametrize("raw", ["soon", "0", "-5m", "inf", "nan", "5d"])
def test_a_bad_duration_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({"PGDATABASE": "shop", "BACKUP_TIMEOUT": raw})
    assert "BACKUP_TIMEOUT" in info.value.message


def test_no_database_named_is_refused_by_the_commands_that_back_up() -> None:
    config = load({"PGUSER": "app", "USER": "root"})  # libpq would pick the database "app"
    assert config.postgres.databases == ()
    with pytest.raises(ConfigError) as info:
        config.postgres.require_databases()
    for way in ("BACKUP_DATABASES", "PGDATABASE", "DATABASE_URL"):
        assert way in info.value.message + info.value.hint
    for named in (
        {"PGDATABASE": "shop"},
        {"DATABASE_URL": "postgresql://u@h/shop"},
        {"BACKUP_DATABASES": "shop"},
        {"BACKUP_DATABASES": "all"},
    ):
        load(named).postgres.require_databases()  # no error


def test_a_refused_configuration_still_yields_the_channels_that_work(tmp_path):
    from backup.config.environment import parse_for_reports

    environ = {
        "BACKUP_COMPRESSION": "lz4",  # the problem that makes load() refuse it all
        "PGHOST": "db.internal",
        "PGPASSWORD": "pg-secret-1",
        "TELEGRAM_BOT_TOKEN": "123:token-value",
        "ADMIN_USER_ID": "42",
        "NOTIFY_WEBHOOK_URL": "https://hooks.example/ok-path-1234,hooks.example/no-scheme",
        "HEALTHCHECK_URL": "hc-ping.com/uuid",  # unusable: left out
        "PROMETHEUS_PUSHGATEWAY_URL": "http://pushgateway:9091",
        "METRICS_FILE": str(tmp_path / "pgbackup.prom"),
        "NOTIFY_ON": "sometimes",  # unusable: the default, as load() would have
    }
    with pytest.raises(ConfigError):
        load(environ)
    settings = parse_for_reports(environ)
    assert settings.notify.telegram_bot_token == Secret("123:token-value")
    assert settings.notify.telegram_chat_id == "42"
    assert settings.notify.webhook_urls == (Secret("https://hooks.example/ok-path-1234"),)
    assert settings.notify.healthcheck_url is None
    assert settings.notify.notify_on == "always"
    assert settings.metrics.pushgateway_url == "http://pushgateway:9091"
    assert settings.metrics.metrics_file == str(tmp_path / "pgbackup.prom")
    assert settings.host == "db.internal:5432"
    assert {"pg-secret-1", "123:token-value", "/ok-path-1234"} <= set(settings.secrets)


def test_a_channel_with_unusable_settings_is_left_out():
    from backup.config.environment import parse_for_reports

    settings = parse_for_reports(
        {
            "TELEGRAM_BOT_TOKEN": "123:token-value",  # no chat id
            "PROMETHEUS_PUSHGATEWAY_URL": "pushgateway:9091",
            "HEALTHCHECK_URL_FILE": "/nonexistent/hc",
        }
    )
    assert settings.notify.telegram_bot_token is None
    assert settings.notify.healthcheck_url is None
    assert settings.metrics.pushgateway_url is None


def test_a_destinations_own_hint_reaches_the_user() -> None:
    with pytest.raises(ConfigError) as info:
        load({"PGDATABASE": "shop", "BACKUP_DESTINATIONS": "file://relative/path"})
    assert "file://./backups" in info.value.hint  # how to write a relative path
