"""The byte stream of a backup, both ways, never spooled: pg_dump's output through compression
and encryption to every destination (``pipeline.py``, ``codec.py``, ``age/``, ``fanout.py``), and
a stored backup read back, checksum-verified, decrypted and decompressed (``readback.py``)."""
