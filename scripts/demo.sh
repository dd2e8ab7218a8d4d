#!/usr/bin/env bash
# make demo: a local Vault dev server, the broker, one agent session from
# start to revocation. Everything lives in a temporary tmpfs directory and is
# torn down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

VAULT=$(scripts/build-vault.sh)
CB=$PWD/bin/credbroker

base=${XDG_RUNTIME_DIR:-/dev/shm}
work=$(mktemp -d "$base/credbroker-demo.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18200)
export VAULT_ADDR=http://127.0.0.1:$port
ROOT=demo-root-$RANDOM$RANDOM

say "Starting a Vault dev server on $VAULT_ADDR (the broker's real authority)"
"$VAULT" server -dev -dev-root-token-id="$ROOT" -dev-listen-address="127.0.0.1:$port" >"$work/vault.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do VAULT_TOKEN=$ROOT "$VAULT" status >/dev/null 2>&1 && break; sleep 0.1; done
VAULT_TOKEN=$ROOT VAULT_BIN=$VAULT configs/examples/vault/setup.sh 2>/dev/null

say "Writing a config from configs/examples/config.yaml"
sed -e "s#address: http://127.0.0.1:8200#address: $VAULT_ADDR#" \
    -e "s#token_env: VAULT_TOKEN#token_env: DEMO_BROKER_VAULT_TOKEN#" \
    -e "s#  \# runtime_dir: .*#  runtime_dir: $work/run#" \
    -e "s#  \# state_dir: .*#  state_dir: $work/state#" \
    configs/examples/config.yaml >"$work/config.yaml"
export CREDBROKER_CONFIG=$work/config.yaml
echo "config: $CREDBROKER_CONFIG (runtime_dir on $(stat -f -c %T "$base"))"

say "Starting the broker daemon"
DEMO_BROKER_VAULT_TOKEN=$ROOT "$CB" serve --log-level warn 2>"$work/broker.log" &
pids+=($!)
unset VAULT_TOKEN
for _ in $(seq 100); do "$CB" status >/dev/null 2>&1 && break; sleep 0.1; done
run "$CB" status

say "Starting a session for role agent-readonly"
out=$("$CB" session start --role agent-readonly --ttl 10m --output json)
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$out")
dir=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["dir"])' <<<"$out")
echo "session $id, dir $dir"

say "The session dir (tmpfs, dir 0500, files 0400)"
run ls -lR "$dir"
echo "--- env (token redacted for the demo) ---"
sed -E 's/(VAULT_TOKEN=).*/\1<redacted>/' "$dir/env"

say "Using the session token: allowed by its role..."
token=$(cat "$dir/vault/token")
echo '$ VAULT_TOKEN=$(cat $dir/vault/token) vault kv get -mount=secret agent/readonly/config'
VAULT_TOKEN="$token" "$VAULT" kv get -mount=secret agent/readonly/config
say "...and denied outside it"
echo '$ VAULT_TOKEN=... vault kv get -mount=secret agent/dev/config'
denied=$(VAULT_TOKEN="$token" "$VAULT" kv get -mount=secret agent/dev/config 2>&1 || true)
grep -m1 -i "permission denied" <<<"$denied" || { echo "FAIL: expected a denial"; exit 1; }

say "Running a command with the session's env (session ends when it exits)"
run "$CB" session start --role agent-dev -- sh -c 'echo "agent sees VAULT_ADDR=$VAULT_ADDR and a token of ${#VAULT_TOKEN} chars"; ls "$CREDBROKER_SESSION_DIR/vault/secrets"'

say "Ending the session"
run "$CB" session end "$id"
say "The token is now rejected by Vault"
if env VAULT_TOKEN="$token" "$VAULT" token lookup >/dev/null 2>&1; then
  echo "FAIL: the token still works"; exit 1
fi
rejected=$(VAULT_TOKEN="$token" "$VAULT" token lookup 2>&1 || true)
grep -m1 -E "permission denied|bad token" <<<"$rejected" || true
ls "$dir" 2>/dev/null && { echo "FAIL: session dir still there"; exit 1; }
echo "session dir removed: $dir"

say "Incident response: revoke --all"
"$CB" session start --role agent-readonly >/dev/null
run "$CB" revoke --all --reason "demo incident"
"$CB" session start --role agent-readonly || echo "(refused during the incident, as it should be)"
run "$CB" incident clear

say "Audit log (no secret values)"
tail -n 6 "$work/state/audit.log"
if grep -q "$token" "$work/state/audit.log" "$work/broker.log"; then echo "FAIL: token in logs"; exit 1; fi
say "demo finished"
