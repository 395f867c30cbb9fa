# syntax=docker/dockerfile:1
#
# pgbackup-job: one-shot PostgreSQL backup job.
#
#   docker build -t pgbackup-job .
#   docker run --rm --env-file backup.env pgbackup-job            # one backup, then exit
#   docker run --rm --env-file backup.env pgbackup-job list
#   docker run --rm pgbackup-job --version                        # the job, Python, pg_dump majors
#
# Build arguments:
#   BASE_IMAGE        a Debian-based image (default debian:trixie-slim)
#   PG_CLIENT_SOURCE  pgdg   = PostgreSQL client tools 14..18 from the PostgreSQL project's apt
#                              repository (the job picks the one that matches the server)
#                     debian = the distribution's own postgresql-client-<major> packages, for
#                              builds that cannot reach the PostgreSQL apt repository: those of
#                              PG_MAJORS it has (bookworm: 15, trixie: 17), the others named in
#                              the build log
#   PG_MAJORS         the client majors installed (default "14 15 16 17 18"): postgresql-client-N
#                     for each, of which only the four tools are kept (no Perl wrapper)
# pip may need a private CA bundle behind an intercepting proxy: pass it as a build secret,
#   docker build --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt .
#
# What keeps it small (README, "Container image", has the sizes and how to measure them): the
# final image is the base, Python and zstd/age from Debian without docs, man pages, locales or
# apt's caches; of each PostgreSQL major only pg_dump, pg_restore, pg_dumpall and psql and the
# libraries they load (not the packages, which bring Perl); a venv without pip or setuptools,
# without the debug sections of its extensions and without botocore's models of the AWS
# services the job never calls.

ARG BASE_IMAGE=debian:trixie-slim

# ---------------------------------------------------------------------------------------------
# system: the base plus what a run needs from Debian (Python, CA certificates, zstd, age). The
# final image and the stages that build for it start here, so the files they copy into it fit.
# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS system

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# What Debian's slim images leave out, for the packages installed here too (copyright files
# stay). Python's own test suite, IDLE, tkinter, pydoc's topics and 2to3 are never run. The
# standard library keeps its bytecode only (a .pyc in each module's place, imported as before;
# a traceback names file and line without the code), as the venv does (scripts/slim_venv.py);
# but py_compile.py and compileall.py, which Debian's maintainer scripts run as files.
# hadolint ignore=DL3008
RUN printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' \
      > /etc/dpkg/dpkg.cfg.d/pgbackup-slim; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 ca-certificates zstd age; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt \
      /var/log/dpkg.log; \
    for lib in /usr/lib/python3.*; do \
      rm -rf "$lib"/{test,idlelib,tkinter,turtledemo,pydoc_data,lib2to3,ensurepip}; \
      python3 -m compileall -q -b -f "$lib" >/dev/null || true; \
      find "$lib" -name '*.py' -not -name py_compile.py -not -name compileall.py \
        -exec sh -c 'for f; do [ ! -e "${f}c" ] || rm "$f"; done' _ {} +; \
      find "$lib" -depth -name __pycache__ -exec rm -rf {} +; \
    done; \
    python3 --version; zstd --version; age --version

# ---------------------------------------------------------------------------------------------
# build: pip in a venv of its own (/opt/pip), for the build only; the app's venv /opt/venv is
# created without pip or setuptools, and pip fills it from outside (pip --python).
# ---------------------------------------------------------------------------------------------
FROM system AS build
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# hadolint ignore=DL3008
RUN apt-get update; \
    apt-get install -y --no-install-recommends python3-venv binutils; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -m venv /opt/pip; \
    python3 -m venv --without-pip /opt/venv

# ---------------------------------------------------------------------------------------------
# deps: the Python dependencies in /opt/venv: the exact versions of requirements.lock, wheels
# only (no compiler), each file checked against its sha256 there (pip's hash-checking mode also
# refuses a dependency the lock does not list). From the lock alone, so that a change to the
# code does not download them again. scripts/lock-deps.sh (make lock) writes the lock.
# Then scripts/slim_venv.py drops what a run never reads: the debug sections of extensions
# (zstandard's two backends: 23 MB of 24) and botocore's models of the AWS services the job
# never calls (it checks that every service botocore's own code calls is kept).
# ---------------------------------------------------------------------------------------------
FROM build AS deps
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# S3, and what botocore's credential providers call: STS (roles, web identity), SSO, sign-in
ARG BOTOCORE_SERVICES="s3,sts,sso,sso-oidc,signin"

WORKDIR /src
COPY requirements.lock scripts/slim_venv.py ./
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/pip/bin/pip --python /opt/venv/bin/python \
      install --require-hashes --only-binary=:all: -r requirements.lock; \
    /opt/pip/bin/pip --python /opt/venv/bin/python check; \
    site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
    /opt/venv/bin/python -B slim_venv.py "$site" --aws-services "${BOTOCORE_SERVICES}"; \
    rm -rf /src/*

# ---------------------------------------------------------------------------------------------
# app: the app itself as a wheel (setuptools, the build backend, is fetched for the build only
# and is not in the image), installed with --no-deps (nothing unhashed comes with it) into a
# staging root, /stage, that the final image copies as it is: /opt/venv/... and the `pgbackup`
# command in /opt/venv/bin.
# ---------------------------------------------------------------------------------------------
FROM deps AS app
# .dockerignore lets in only pyproject.toml, README.md, LICENSE, entrypoint.py and backup/
COPY . .
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/pip/bin/pip wheel --no-deps --wheel-dir /tmp/wheels .; \
    /opt/pip/bin/pip --python /opt/venv/bin/python install --no-deps --no-index --root /stage \
      --no-warn-script-location /tmp/wheels/*.whl; \
    install -D -m 0644 entrypoint.py /stage/app/entrypoint.py; \
    install -D -m 0644 LICENSE /stage/usr/share/doc/pgbackup-job/LICENSE

# ---------------------------------------------------------------------------------------------
# pgclient: the PostgreSQL client tools, installed here, of which /stage keeps pg_dump,
# pg_restore, pg_dumpall and psql of each major and the libraries they load that `system` does
# not have (or has in another version); /usr/local/bin/<tool> is the newest major's, for use by
# hand (the job picks the major that matches the server: backup/postgres/tools.py).
# ---------------------------------------------------------------------------------------------
FROM system AS pgclient
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

ARG PG_CLIENT_SOURCE=pgdg
ARG PG_MAJORS="14 15 16 17 18"

# The pgdg signing key is taken from Debian's own postgresql-common package (signed by the
# Debian archive key), so no key is fetched over the network by hand.
# hadolint ignore=DL3008,DL3003,SC2086
RUN export DEBIAN_FRONTEND=noninteractive; \
    find / -xdev -type f -name '*.so*' -exec sha256sum {} + | sort > /tmp/libs-before; \
    apt-get update; \
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
        majors="${PG_MAJORS}" ;; \
      debian) \
        majors=""; \
        for major in ${PG_MAJORS}; do \
          if apt-cache show "postgresql-client-${major}" >/dev/null 2>&1; then \
            majors="$majors ${major}"; \
          else echo "PG_CLIENT_SOURCE=debian: this distribution has no postgresql-client-${major}"; fi; \
        done; \
        [ -n "$majors" ] || { echo "PG_CLIENT_SOURCE=debian: none of PG_MAJORS (${PG_MAJORS})" >&2; exit 2; } ;; \
      *) echo "PG_CLIENT_SOURCE must be pgdg or debian, not '${PG_CLIENT_SOURCE}'" >&2; exit 2 ;; \
    esac; \
    pkgs=""; for major in $majors; do pkgs="$pkgs postgresql-client-${major}"; done; \
    apt-get install -y --no-install-recommends $pkgs; \
    for major in $majors; do \
      [ -x "/usr/lib/postgresql/${major}/bin/pg_dump" ] \
        || { echo "postgresql-client-${major} has no /usr/lib/postgresql/${major}/bin/pg_dump" >&2; exit 1; }; \
    done; \
    tools="pg_dump pg_restore pg_dumpall psql"; \
    for bindir in /usr/lib/postgresql/*/bin; do \
      for tool in $tools; do install -D -m 0755 "$bindir/$tool" "/stage$bindir/$tool"; done; \
    done; \
    for bindir in /usr/lib/postgresql/*/bin; do for tool in $tools; do ldd "$bindir/$tool"; done; done \
      | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u > /tmp/libs-needed; \
    while read -r path; do \
      real="$(realpath "$path")"; \
      grep -qxF "$(sha256sum "$real")" /tmp/libs-before && continue; \
      install -D -m 0644 "$real" "/stage$real"; \
      link="$(dirname "$real")/$(basename "$path")"; \
      [ "$link" = "$real" ] || ln -sf "$(basename "$real")" "/stage$link"; \
    done < /tmp/libs-needed; \
    newest="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5 -n | tail -1)"; \
    mkdir -p /stage/usr/local/bin; \
    for tool in $tools; do ln -s "$newest/$tool" "/stage/usr/local/bin/$tool"; done; \
    find /stage -printf '%s\t%p\n' | sort -k2

# ---------------------------------------------------------------------------------------------
# runtime: system + the client tools + the venv + the app, as a non-root user
# ---------------------------------------------------------------------------------------------
FROM system

RUN groupadd --gid 10001 pgbackup \
 && useradd --uid 10001 --gid 10001 --home-dir /home/pgbackup --create-home \
      --shell /usr/sbin/nologin pgbackup \
 && install -d -o 10001 -g 10001 -m 0755 /data \
 && chmod 1777 /tmp

COPY --from=pgclient /stage/ /
COPY --from=deps /opt/venv /opt/venv
COPY --from=app /stage/ /

ENV PATH="/opt/venv/bin:${PATH}" \
    HOME=/home/pgbackup \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

# Every tool of every major loads (a library missing from the copy fails here, not in a run),
# and the app imports with every dependency.
RUN ldconfig \
 && for tool in /usr/lib/postgresql/*/bin/*; do "$tool" --version; done \
 && pg_dump --version && zstd --version && age --version \
 && pgbackup --version \
 && python -c "import backup.cli, psycopg, zstandard, pyrage, boto3, b2sdk, apprise, \
      google.cloud.storage, azure.storage.blob; \
      print('psycopg', psycopg.__version__, psycopg.pq.__impl__, 'on libpq', psycopg.pq.version())"

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

# `pgbackup` is the job's command (pip's script for backup.cli:main); the arguments after the
# image name are its arguments, `backup` when there are none. /app/entrypoint.py stays for
# deployments that run `python /app/entrypoint.py ...`.
ENTRYPOINT ["pgbackup"]
CMD ["backup"]
