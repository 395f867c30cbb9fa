"""PostgreSQL: the client tools and their command lines (``tools.py``), the server spoken to
in-process (``server.py``), checked child processes (``processes.py``), pg_restore fed from a
stream (``pg_restore.py``) and what a dump holds, for its manifest (``contents.py``)."""
