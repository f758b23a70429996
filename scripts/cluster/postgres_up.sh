#!/usr/bin/env bash
# A local PostgreSQL for Optuna studies that many workers share. Debian/Ubuntu, as root.
#
#   sudo scripts/cluster/postgres_up.sh          # install if needed, start, create role + database
#   sudo scripts/cluster/postgres_up.sh --stop   # stop the server (data stays)
#
# Listens on 127.0.0.1 only. Creates the role $PG_ROLE (cnnsweep) owning the database $PG_DB
# (optuna), with a random password written to the ~/.pgpass of the user who ran sudo (root's
# otherwise), where libpq finds it: storage URLs then carry no password:
#   hydra.sweeper.storage=postgresql://cnnsweep@127.0.0.1:5432/optuna
# Idempotent: run again, it keeps the password in ~/.pgpass and starts only what is down.
set -euo pipefail

ROLE=${PG_ROLE:-cnnsweep}
DB=${PG_DB:-optuna}
CONF_NAME=cnnsweep.conf

die() { echo "postgres_up.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0): it installs packages and starts a system service"
case "$ROLE$DB" in *[!A-Za-z0-9_]*) die "PG_ROLE and PG_DB: letters, digits and _ only" ;; esac

cluster() { pg_lsclusters -h 2>/dev/null | head -1; }  # "15 main 5432 online postgres ..."

if [ "${1:-}" = "--stop" ]; then
  read -r ver name _ status _ <<<"$(cluster)" || true
  if [ "${status:-}" = online ]; then pg_ctlcluster "$ver" "$name" stop && echo "stopped PostgreSQL $ver/$name"; fi
  exit 0
elif [ -n "${1:-}" ]; then
  die "unknown argument '$1' (only --stop)"
fi

# 1. the package and a cluster
if ! command -v pg_ctlcluster >/dev/null; then
  command -v apt-get >/dev/null || die "no apt-get: install PostgreSQL yourself"
  echo "installing postgresql ..."
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq postgresql >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }; } \
    || die "could not install postgresql with apt-get (offline? no such package?)"
fi
if [ -z "$(cluster)" ]; then
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  pg_createcluster "$ver" main >/dev/null
fi
read -r ver name port status _ <<<"$(cluster)"

# 2. 127.0.0.1 only (Debian's default, localhost, may also mean ::1); then start
want="listen_addresses = '127.0.0.1'  # cnnsweep scripts/cluster/postgres_up.sh"
file=/etc/postgresql/$ver/$name/conf.d/$CONF_NAME
if [ "$(cat "$file" 2>/dev/null)" != "$want" ]; then
  mkdir -p "$(dirname "$file")" && printf '%s\n' "$want" >"$file"
  [ "$status" = online ] && pg_ctlcluster "$ver" "$name" restart
fi
[ "$(cluster | awk '{print $4}')" = online ] || pg_ctlcluster "$ver" "$name" start
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 0.2; done
pg_isready -q -h 127.0.0.1 -p "$port" || die "PostgreSQL does not answer on 127.0.0.1:$port"

# 3. the password: kept in the invoking user's ~/.pgpass (mode 600), never on a command line
owner=${SUDO_USER:-root}
home=$(getent passwd "$owner" | cut -d: -f6)
pgpass=$home/.pgpass
entry="127.0.0.1:$port:$DB:$ROLE:"
password=$(grep -F "$entry" "$pgpass" 2>/dev/null | head -1 | cut -d: -f5- || true)
if [ -z "$password" ]; then
  password=$(head -c 48 /dev/urandom | base64 | tr -dc A-Za-z0-9 | head -c 24)
  touch "$pgpass" && chown "$owner" "$pgpass" && chmod 600 "$pgpass"
  printf '%s%s\n' "$entry" "$password" >>"$pgpass"
fi

# 4. role and database (the SQL goes through stdin: the password is never in argv)
pw_sql=${password//\\/\\\\}  # psql's quoting: \\ and '' inside '...'
pw_sql=${pw_sql//\'/\'\'}
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL
\set pw '$pw_sql'
SELECT 'CREATE ROLE $ROLE LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE')
\gexec
ALTER ROLE $ROLE LOGIN PASSWORD :'pw';
SELECT 'CREATE DATABASE $DB OWNER $ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB')
\gexec
SQL
psql_check=$(runuser -u "$owner" -- env HOME="$home" psql -h 127.0.0.1 -p "$port" -U "$ROLE" -d "$DB" -Atc 'select 1' 2>&1) \
  || die "cannot log in as $ROLE: $psql_check"

echo "PostgreSQL $ver is up on 127.0.0.1:$port: role $ROLE, database $DB, password in $pgpass"
echo "  storage URL: postgresql://$ROLE@127.0.0.1:$port/$DB"
echo "  needs the driver: .venv/bin/pip install -c constraints.txt -e '.[postgres]'"
