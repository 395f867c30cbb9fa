"""gs:// and az:// destinations named for people: the notifications' storage line names the
service (as Backblaze B2's does), with the URL that says which bucket and prefix."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backup.job.outcome import DestinationResult
from backup.languages import language
from backup.notify.message import describe_destination, format_message
from tests.unit.test_notify import report


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "gs://acme-db-backups/postgresql",
            "Google Cloud Storage (gs://acme-db-backups/postgresql)",
        ),
        ("az://db-backups/postgresql", "Azure Blob Storage (az://db-backups/postgresql)"),
        ("azure://db-backups/pg", "Azure Blob Storage (azure://db-backups/pg)"),
    ],
)
def test_cloud_destinations_are_named(url: str, expected: str) -> None:
    assert describe_destination(url) == expected
    assert describe_destination(url, language("fr")) == expected


def test_the_storage_line_names_both_clouds() -> None:
    base = report()
    [result] = base.results
    gs, az = "gs://acme/pg", "az://backups/pg"
    stored = replace(
        result, destinations=(DestinationResult(gs, True, None), DestinationResult(az, True, None))
    )
    text = format_message(replace(base, results=(stored,)))
    assert f"Google Cloud Storage ({gs}), Azure Blob Storage ({az})" in text
