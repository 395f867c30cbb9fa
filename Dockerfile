# syntax=docker/dockerfile:1
#
# pgbackup-job: one-shot PostgreSQL backup job.
#
#   docker build -t pgbackup-job .
#   docker run --rm --env-file backup.env pgbackup-job            # one backup, then exit
#   docker run --rm --env-file backup.env pgbackup-job list
#
# Build arguments:
#   BASE_IMAGE        a Debian-based image (default debian:trixie-slim)
#   PG_CLIENT_SOURCE  pgdg   = PostgreSQL client tools 14..18 from the PostgreSQL project's apt
#                              repository (the job picks the one that matches the server)
#                     debian = the distribution's own postgresql-client (one major only), for
#                              builds that cannot reach the PostgreSQL apt repository
#   PG_MAJORS         the majors installed from pgdg (default "14 15 16 17 18")
# pip may need a private CA bundle behind an intercepting proxy: pass it as a build secret,
#   docker build --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt .

ARG BASE_IMAGE=debian:trixie-slim

# ---------------------------------------------------------------------------------------------
# deps: the Python dependencies in a venv at /opt/venv: the exact versions of requirements.lock,
# wheels only (no compiler), each file checked against its sha256 there (pip's hash-checking
# mode also refuses a dependency the lock does not list). From the lock alone, so that a change
# to the code does not download them again. scripts/lock-deps.sh (make lock) writes the lock.
# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS deps

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

WORKDIR /src
COPY requirements.lock ./
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock \
 && /opt/venv/bin/pip check \
 && rm -rf /src/*

# ---------------------------------------------------------------------------------------------
# app: the app itself as a wheel (setuptools, the build backend, is fetched for the build only
# and is not in the image); installed below with --no-deps, so nothing unhashed comes with it
# ---------------------------------------------------------------------------------------------
FROM deps AS app
# .dockerignore lets in only pyproject.toml, README.md, LICENSE, entrypoint.py and backup/
COPY . .
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
# runtime: Python, PostgreSQL client tools, zstd and age (for recovery by hand), a non-root user
# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

ARG PG_CLIENT_SOURCE=pgdg
ARG PG_MAJORS="14 15 16 17 18"

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# The pgdg signing key is taken from Debian's own postgresql-common package (signed by the
# Debian archive key), so no key is fetched over the network by hand.
# hadolint ignore=DL3008,DL3003,SC2086
RUN export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 ca-certificates zstd age; \
    case "${PG_CLIENT_SOURCE}" in \
      pgdg) \
        key=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc; \
        tmp="$(mktemp -d)"; chown _apt "$tmp"; \
        (cd "$tmp" && apt-get download postgresql-common \
          && dpkg-deb --fsys-tarfile postgresql-common_*.deb | tar -x ".${key}"); \
        install -D -m 0644 "${tmp}${key}" "${key}"; \
        rm -rf "$tmp"; \
        . /etc/os-release; \
        echo "deb [signed-by=${key}] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
          > /etc/apt/sources.list.d/pgdg.list; \
        apt-get update; \
        pkgs=""; for major in ${PG_MAJORS}; do pkgs="$pkgs postgresql-client-${major}"; done; \
        apt-get install -y --no-install-recommends $pkgs ;; \
      debian) \
        apt-get install -y --no-install-recommends postgresql-client ;; \
      *) echo "PG_CLIENT_SOURCE must be pgdg or debian, not '${PG_CLIENT_SOURCE}'" >&2; exit 2 ;; \
    esac; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    ls -d /usr/lib/postgresql/*/bin; \
    pg_dump --version; zstd --version; age --version

RUN groupadd --gid 10001 pgbackup \
 && useradd --uid 10001 --gid 10001 --home-dir /home/pgbackup --create-home \
      --shell /usr/sbin/nologin pgbackup \
 && install -d -o 10001 -g 10001 -m 0755 /data \
 && chmod 1777 /tmp

COPY --from=deps /opt/venv /opt/venv
COPY --from=app /wheels /tmp/wheels
RUN /opt/venv/bin/pip install --no-deps --no-index --no-cache-dir --disable-pip-version-check \
      /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && /opt/venv/bin/python -c "import backup.cli, psycopg, zstandard, pyrage, boto3, b2sdk"
COPY entrypoint.py /app/entrypoint.py

ENV PATH="/opt/venv/bin:${PATH}" \
    HOME=/home/pgbackup \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

# The default destination is file://./backups, i.e. /data/backups: mount a volume at /data to
# keep such backups (or set BACKUP_DESTINATIONS to s3:// or b2://).
WORKDIR /data
USER 10001:10001

# Last, so that a new revision or date does not rebuild the layers above.
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
# The repository URL (the release workflow sets it, with the other labels, from the git context)
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="pgbackup-job" \
      org.opencontainers.image.description="One-shot PostgreSQL backup job: pg_dump streamed through zstd and age into B2, S3 or a directory, with manifests, retention, restore and verification." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE_URL}"

ENTRYPOINT ["python", "/app/entrypoint.py"]
CMD ["backup"]
