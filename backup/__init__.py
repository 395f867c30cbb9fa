"""pgbackup-job: one-shot PostgreSQL backups streamed to object storage."""

__version__ = "0.1.0"
