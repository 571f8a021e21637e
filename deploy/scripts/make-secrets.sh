#!/usr/bin/env bash
# Creates (or replaces) the two Secrets deploy/k8s mounts, in the current kubectl namespace:
#   ringtrain-tls    ca.crt, tls.crt, tls.key   (the layout cert-manager writes, too)
#   ringtrain-token  token
# from a fresh `ringtrain certs` set: a new CA, one certificate every pod presents, a new token.
#   deploy/scripts/make-secrets.sh [NAMESPACE]
# Needs kubectl, and node with this checkout built (npm run build). Nothing is left on disk:
# the files live in a private temporary folder removed on exit.
set -euo pipefail
namespace=${1:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
cli="$root/dist/cli/main.js"
[[ -f $cli ]] || { echo "make-secrets: $cli not found; run npm run build first" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node "$cli" certs --out "$work/certs" \
  --hosts ringtrain-coordinator,ringtrain-coordinator-0-0.ringtrain >/dev/null
ns=()
[[ -n $namespace ]] && ns=(--namespace "$namespace")
kubectl "${ns[@]}" create secret generic ringtrain-tls \
  --from-file=ca.crt="$work/certs/ca.pem" \
  --from-file=tls.crt="$work/certs/cert.pem" \
  --from-file=tls.key="$work/certs/key.pem" \
  --dry-run=client -o yaml | kubectl "${ns[@]}" apply -f -
kubectl "${ns[@]}" create secret generic ringtrain-token \
  --from-file=token="$work/certs/token" \
  --dry-run=client -o yaml | kubectl "${ns[@]}" apply -f -
echo "make-secrets: ringtrain-tls and ringtrain-token are in place; a running job keeps its old ones until its pods restart"
