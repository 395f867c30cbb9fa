"""PostgreSQL: the client tools and their command lines (``tools.py``), the server spoken to
in-process (``server.py``), checked child processes (``processes.py``) and pg_restore fed from a
stream (``pg_restore.py``)."""
