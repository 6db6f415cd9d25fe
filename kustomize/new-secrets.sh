#!/bin/sh
# Write OVERLAY/secrets/trackside.env, the Secret `trackside-secrets` of a kustomize overlay, with
# fresh random values for every key its trackside.env.example lists:
#   secret-key         a Fernet key (encrypts job secrets in the database)
#   gateway-token      tst_ + 64 hex characters (the gateways' credential)
#   dashboard-secret   64 hex characters (signs the dashboard's CSRF tokens)
#   postgres-password  48 hex characters (the in-cluster PostgreSQL, local overlay)
#   database-url       the in-cluster PostgreSQL when the overlay has one; otherwise taken from
#                      $TRACKSIDE_DATABASE_URL (your database)
# An existing file is never overwritten: it holds the key to the data already stored.
# Values are never printed.
#
#   kustomize/new-secrets.sh kustomize/overlays/local
#   TRACKSIDE_DATABASE_URL=postgresql://u:p@db.example.com:5432/trackside kustomize/new-secrets.sh kustomize/overlays/production
set -eu

fail() {
    echo "new-secrets.sh: $*" >&2
    exit 2
}

[ $# -eq 1 ] || fail "usage: new-secrets.sh OVERLAY_DIR (e.g. kustomize/overlays/local)"
overlay=${1%/}
example="$overlay/secrets/trackside.env.example"
target="$overlay/secrets/trackside.env"
[ -f "$example" ] || fail "$example not found: OVERLAY_DIR must be an overlay with a secrets/ template"
[ ! -e "$target" ] || fail "$target already exists; it holds the secret key of the data already stored, so it is never overwritten (move it away yourself to start over)"

random_bytes() {
    head -c "$1" /dev/urandom
}
hex() {
    random_bytes "$1" | od -An -tx1 -v | tr -d ' \n'
}
fernet_key() {  # 32 random bytes, URL-safe base64 (44 characters)
    random_bytes 32 | base64 | tr -d '\n' | tr '+/' '-_'
}

keys=$(sed -n 's/^\([a-z][a-z-]*\)=.*$/\1/p' "$example")
[ -n "$keys" ] || fail "$example lists no keys"
in_cluster_postgres=false
case " $(echo $keys) " in *" postgres-password "*) in_cluster_postgres=true ;; esac
postgres_password=$(hex 24)

umask 077
tmp="$target.tmp.$$"
trap 'rm -f "$tmp"' EXIT
: >"$tmp"
for key in $keys; do
    case "$key" in
        secret-key) value=$(fernet_key) ;;
        gateway-token) value="tst_$(hex 32)" ;;
        dashboard-secret) value=$(hex 32) ;;
        postgres-password) value=$postgres_password ;;
        database-url)
            if $in_cluster_postgres; then
                value="postgresql://trackside:$postgres_password@postgres.trackside.svc.cluster.local:5432/trackside"
            else
                value=${TRACKSIDE_DATABASE_URL:-}
                [ -n "$value" ] || fail "this overlay uses your own PostgreSQL: set TRACKSIDE_DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/DATABASE"
                case "$value" in
                    postgresql://* | postgres://* | postgresql+psycopg://*) ;;
                    *) fail "TRACKSIDE_DATABASE_URL must start with postgresql:// (got a value of another scheme)" ;;
                esac
            fi
            ;;
        *) fail "$example lists a key this script does not know how to make: $key" ;;
    esac
    printf '%s=%s\n' "$key" "$value" >>"$tmp"
done
mv "$tmp" "$target"
trap - EXIT
echo "wrote $target ($(echo $keys | tr ' ' ','))"
echo "keep a copy of it somewhere safe: without secret-key, the job secrets stored in the database cannot be read"
