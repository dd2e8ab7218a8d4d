#!/usr/bin/env bash
# make demo: a local Vault dev server and MinIO (S3 + STS), the broker, agent
# sessions from start to revocation. Everything lives in a temporary tmpfs
# directory and is torn down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

scripts/install-deps.sh
VAULT=$(scripts/build-vault.sh)
MINIO=$(scripts/build-minio.sh)
KUBE_APISERVER=$(scripts/build-kube.sh)
AWSCLI=/usr/bin/aws
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

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(freeport)
export VAULT_ADDR=http://127.0.0.1:$port
ROOT=demo-root-$RANDOM$RANDOM

say "Starting a Vault dev server on $VAULT_ADDR (the broker's real authority)"
"$VAULT" server -dev -dev-root-token-id="$ROOT" -dev-listen-address="127.0.0.1:$port" >"$work/vault.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do VAULT_TOKEN=$ROOT "$VAULT" status >/dev/null 2>&1 && break; sleep 0.1; done
VAULT_TOKEN=$ROOT VAULT_BIN=$VAULT configs/examples/vault/setup.sh 2>/dev/null

say "Starting MinIO (an S3 server with AWS-compatible STS) on 127.0.0.1"
mport=$(freeport)
MINIO_URL=http://127.0.0.1:$mport
MINIO_KEY=demo-broker MINIO_SECRET=demo-secret-$RANDOM$RANDOM
MINIO_ROOT_USER=$MINIO_KEY MINIO_ROOT_PASSWORD=$MINIO_SECRET MINIO_BROWSER=off \
  "$MINIO" server --quiet --address "127.0.0.1:$mport" --console-address "127.0.0.1:$(freeport)" "$work/minio" >"$work/minio.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do curl -fs "$MINIO_URL/minio/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
s3admin() { AWS_ACCESS_KEY_ID=$MINIO_KEY AWS_SECRET_ACCESS_KEY=$MINIO_SECRET AWS_DEFAULT_REGION=us-east-1 \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null "$AWSCLI" --endpoint-url "$MINIO_URL" "$@"; }
for b in agent-readable agent-other; do
  s3admin s3 mb "s3://$b" >/dev/null
  echo "hello from $b" | s3admin s3 cp - "s3://$b/hello.txt" >/dev/null
done
echo "buckets agent-readable and agent-other created"

say "Starting etcd and kube-apiserver (RBAC on) on 127.0.0.1"
go build -o "$work/kubecluster" ./providers/kube/kubetest/cmd/kubecluster
CREDBROKER_KUBE_APISERVER_BIN=$KUBE_APISERVER "$work/kubecluster" -kubeconfig "$work/kubeconfig" >"$work/kube.env" 2>"$work/kube.log" &
pids+=($!)
for _ in $(seq 300); do grep -q '^KUBE_SERVER=' "$work/kube.env" 2>/dev/null && break; sleep 0.2; done
grep -q '^KUBE_SERVER=' "$work/kube.env" || { cat "$work/kube.log"; echo "FAIL: kube-apiserver did not start"; exit 1; }
. "$work/kube.env"
echo "kube-apiserver $KUBE_SERVER ready in ${KUBE_START_SECONDS}s: namespace agents with Role pod-reader;"
echo "the broker's kubeconfig context holds only configs/examples/kube/broker-rbac.yaml"
kadmin() { KUBECONFIG=$work/kubeconfig kubectl --context admin "$@"; }

say "Writing a config from configs/examples/config.yaml, plus an AWS role against MinIO"
sed -e "s#address: http://127.0.0.1:8200#address: $VAULT_ADDR#" \
    -e "s#token_env: VAULT_TOKEN#token_env: DEMO_BROKER_VAULT_TOKEN#" \
    -e "s#  \# runtime_dir: .*#  runtime_dir: $work/run#" \
    -e "s#  \# state_dir: .*#  state_dir: $work/state#" \
    -e "/^providers:/r configs/examples/demo/aws-minio-provider.yaml" \
    -e "/^providers:/r configs/examples/demo/kube-provider.yaml" \
    configs/examples/config.yaml >"$work/config.yaml"
sed -e "s#http://127.0.0.1:9000#$MINIO_URL#g" "$work/config.yaml" >"$work/config.tmp" && mv "$work/config.tmp" "$work/config.yaml"
cat configs/examples/demo/aws-minio-role.yaml >>"$work/config.yaml"
sed -i "s#/etc/credbroker/kubeconfig#$work/kubeconfig#" "$work/config.yaml"
cat configs/examples/demo/kube-role.yaml >>"$work/config.yaml"
# A local "API" for the egress part, reached by a name only the broker's
# gateway resolves (broker.egress.hosts), as a private server would be.
api_port=$(freeport)
mkdir -p "$work/api" && echo "hello from api.demo.test" >"$work/api/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$work/api" "$api_port" >"$work/api.log" 2>&1 &
pids+=($!)
sed -e "s#API_PORT#$api_port#" configs/examples/demo/egress-role.yaml >>"$work/config.yaml"
sed -i "s#^broker:#broker:\n  egress:\n    hosts:\n      api.demo.test: 127.0.0.1#" "$work/config.yaml"
export CREDBROKER_CONFIG=$work/config.yaml
echo "config: $CREDBROKER_CONFIG (runtime_dir on $(stat -f -c %T "$base"))"

say "Starting the broker daemon"
# The broker alone holds the long-lived keys (here MinIO's): sessions get
# 15-minute STS credentials narrowed by the role's session policy.
AWS_ACCESS_KEY_ID=$MINIO_KEY AWS_SECRET_ACCESS_KEY=$MINIO_SECRET AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
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

say "An AWS session (role agent-s3): the official AWS CLI with only the session's files"
cat >"$work/agent-s3.sh" <<'SH'
set -u
echo "AWS_PROFILE=$AWS_PROFILE AWS_CONFIG_FILE=$AWS_CONFIG_FILE"
echo "--- allowed: read agent-readable"
aws --endpoint-url "$AWS_ENDPOINT_URL" s3 cp s3://agent-readable/hello.txt -
echo "--- denied: write agent-readable, read agent-other"
aws --endpoint-url "$AWS_ENDPOINT_URL" s3 cp /etc/hostname s3://agent-readable/x 2>&1 | grep -o "AccessDenied" | head -1
aws --endpoint-url "$AWS_ENDPOINT_URL" s3 cp s3://agent-other/hello.txt - 2>&1 | grep -o "AccessDenied\|Forbidden" | head -1
cp "$CREDBROKER_SESSION_DIR/aws/credentials.json" "$DEMO_KEEP"
SH
DEMO_KEEP=$work/kept-aws.json PATH=/usr/bin:/bin run "$CB" session start --role agent-s3 --keep-env DEMO_KEEP -- sh "$work/agent-s3.sh"
say "...and after the session ended, MinIO rejects those credentials"
kept_env() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["AccessKeyId"], d["SecretAccessKey"], d["SessionToken"])' "$work/kept-aws.json"; }
read -r kid ksk ktok < <(kept_env)
if AWS_ACCESS_KEY_ID=$kid AWS_SECRET_ACCESS_KEY=$ksk AWS_SESSION_TOKEN=$ktok AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null \
   AWS_SHARED_CREDENTIALS_FILE=/dev/null "$AWSCLI" --endpoint-url "$MINIO_URL" s3 cp s3://agent-readable/hello.txt - >/dev/null 2>&1; then
  echo "FAIL: revoked AWS credentials still work"; exit 1
fi
echo "rejected: the session's STS credentials were revoked at MinIO"
rm -f "$work/kept-aws.json"

say "A Kubernetes session (role agent-k8s): kubectl with only the session's KUBECONFIG"
cat >"$work/agent-k8s.sh" <<'SH'
set -u
echo "KUBECONFIG=$KUBECONFIG"
echo "identity: $(kubectl auth whoami -o jsonpath='{.status.userInfo.username}')"
echo "--- allowed: list pods in namespace agents"
kubectl get pods
echo "--- denied: secrets, and pods in another namespace"
kubectl get secrets 2>&1 | grep -o Forbidden | head -1
kubectl get pods -n default 2>&1 | grep -o Forbidden | head -1
mkdir -p "$DEMO_KEEP" && cp "$CREDBROKER_SESSION_DIR/kube/config" "$CREDBROKER_SESSION_DIR/kube/token" "$DEMO_KEEP/"
SH
DEMO_KEEP=$work/kept-kube PATH=/usr/bin:/bin run "$CB" session start --role agent-k8s --keep-env DEMO_KEEP -- sh "$work/agent-k8s.sh"
say "...and after the session ended, kube-apiserver rejects its token"
echo "(a token used in the last 10 s stays in kube-apiserver's token cache until that entry expires; docs/kubernetes.md)"
kstart=$(date +%s.%N)
for _ in $(seq 75); do
  kout=$(KUBECONFIG=$work/kept-kube/config kubectl get pods 2>&1) || true
  grep -q Unauthorized <<<"$kout" && break
  sleep 0.2
done
grep -q Unauthorized <<<"$kout" || { echo "FAIL: the revoked Kubernetes token still works"; exit 1; }
python3 -c "import sys,time; print('rejected (401) %.1f s after the session ended' % (time.time()-float(sys.argv[1])))" "$kstart"
run kadmin -n agents get serviceaccounts,secrets,rolebindings -l app.kubernetes.io/managed-by=credbroker
kubetok=$(cat "$work/kept-kube/token"); rm -rf "$work/kept-kube"

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
"$CB" session start --role agent-k8s >/dev/null
run "$CB" revoke --all --reason "demo incident"
"$CB" session start --role agent-readonly || echo "(refused during the incident, as it should be)"
run "$CB" incident clear
run kadmin -n agents get serviceaccounts -l app.kubernetes.io/managed-by=credbroker

say "An agent in a Docker sandbox: credbroker run"
# The sandbox sees only the project dir (rw) and the session dir (ro, at
# /run/credbroker), runs as a non-root uid with no network, and the session
# ends (token revoked) when it exits. docs/sandbox.md has the recipes.
if command -v docker >/dev/null 2>&1 && docker version >/dev/null 2>&1 && [ -x /bin/busybox ]; then
  scripts/build-sandbox-image.sh >/dev/null
  mkdir -p "$work/project"
  [ "$(id -u)" -ne 0 ] || chown 65534:65534 "$work/project"
  sandbox_start=$(date +%s.%N)
  run "$CB" --log-level warn run --role agent-readonly --sandbox docker --project "$work/project" -- sh -c '
    echo "agent: uid $(id -u), HOME=$HOME, in $(pwd), sees $(ls / | tr "\n" " ")"
    echo "agent: can read its token: $(wc -c < /run/credbroker/vault/token) bytes in /run/credbroker/vault/token"
    if touch /run/credbroker/x 2>/dev/null; then echo "agent: WROTE the session dir"; else echo "agent: cannot write the session dir (read-only mount)"; fi
    if wget -q -O- "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1; then echo "agent: REACHED $VAULT_ADDR"; else echo "agent: no network: cannot reach $VAULT_ADDR"; fi
    [ -e ~/.aws ] || echo "agent: no host home (no ~/.aws)"'
  python3 -c "import sys,time; print('(session start + sandbox + session end: %.2f s)' % (time.time()-float(sys.argv[1])))" "$sandbox_start"
else
  echo "sandbox part skipped: no container engine available (docker version failed, or busybox-static is missing: scripts/install-deps.sh)"
fi

say "Egress: an agent in bubblewrap reaches exactly its role's hosts"
# Role agent-net allows api.demo.test (mapped to 127.0.0.1 by
# broker.egress.hosts) and nothing else. The sandbox has no network
# interface but loopback; the session's gateway socket is mounted in, and
# credbroker exec points HTTP(S)_PROXY at a forwarder to it. docs/egress.md.
if command -v bwrap >/dev/null 2>&1 && bwrap --unshare-all --ro-bind / / true 2>/dev/null; then
  run "$CB" egress check --role agent-net "http://api.demo.test:$api_port/" || true
  run "$CB" egress check --role agent-net https://elsewhere.example/ || true
  # The session's uid (nobody) must reach its session dir: search only.
  chmod 0711 "$work" "$work/run"
  mkdir -p "$work/netproject" && { [ "$(id -u)" -ne 0 ] || chown 65534:65534 "$work/netproject"; }
  cat >"$work/netproject/agent.sh" <<SH
echo "agent: allowed host answers: \$(curl -sS --max-time 10 http://api.demo.test:$api_port/)"
echo "agent: another host: \$(curl -sS --max-time 10 -o /dev/null -D - http://elsewhere.example/ | tr -d '\r' | grep -i -e '^HTTP/' -e '^x-credbroker-denied' | tr '\n' ' ')"
curl -sS --max-time 5 --noproxy '*' http://api.demo.test:$api_port/ >/dev/null 2>&1 || echo "agent: without the proxy: no route and no DNS"
SH
  run "$CB" --log-level warn run --role agent-net --sandbox bwrap --project "$work/netproject" -- sh /workspace/agent.sh
  run "$CB" audit tail -n 3
else
  echo "egress part skipped: bubblewrap is missing or cannot create namespaces here (scripts/install-deps.sh)"
fi

say "Proxy delivery: an agent in bubblewrap uses Vault, S3 and Kubernetes holding only placeholders"
# A second broker (its own socket, state and runtime dir) whose providers
# are named, not 127.0.0.1: clients send named hosts to the proxy, and its
# gateway resolves the names (broker.egress.hosts). Role agent-proxy has
# delivery: proxy (configs/examples/demo/proxy-role.yaml, docs/proxy-mode.md).
if command -v bwrap >/dev/null 2>&1 && bwrap --unshare-all --ro-bind / / true 2>/dev/null; then
  px=$work/px
  mkdir -p "$px/run" "$px/state" "$px/project"
  chmod 0711 "$px" "$px/run"
  [ "$(id -u)" -ne 0 ] || chown 65534:65534 "$px/project"
  sed 's#https://127.0.0.1:#https://kubernetes.default.svc:#' "$work/kubeconfig" >"$px/kubeconfig"
  sed -e "s#$work/run#$px/run#; s#$work/state#$px/state#; s#$work/kubeconfig#$px/kubeconfig#" \
      -e "s#address: $VAULT_ADDR#address: http://vault.demo.test:$port#" \
      -e "s#$MINIO_URL#http://minio.demo.test:$mport#g" \
      -e "s#^      api.demo.test: 127.0.0.1#      api.demo.test: 127.0.0.1\n      vault.demo.test: 127.0.0.1\n      minio.demo.test: 127.0.0.1\n      kubernetes.default.svc: 127.0.0.1#" \
      "$work/config.yaml" >"$px/config.yaml"
  cat configs/examples/demo/proxy-role.yaml >>"$px/config.yaml"
  AWS_ACCESS_KEY_ID=$MINIO_KEY AWS_SECRET_ACCESS_KEY=$MINIO_SECRET AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  DEMO_BROKER_VAULT_TOKEN=$ROOT CREDBROKER_CONFIG=$px/config.yaml "$CB" serve --log-level warn 2>"$px/broker.log" &
  pids+=($!)
  for _ in $(seq 100); do CREDBROKER_CONFIG=$px/config.yaml "$CB" status >/dev/null 2>&1 && break; sleep 0.1; done
  cat >"$px/project/agent.sh" <<'SH'
echo "agent: VAULT_TOKEN=${VAULT_TOKEN%"${VAULT_TOKEN#????????}"}... (a placeholder of ${#VAULT_TOKEN} chars)"
echo "agent: vault (curl): $(curl -sS -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/secret/data/agent/readonly/config" | grep -o '"region":"[^"]*"')"
echo "agent: vault token lookup-self shows the placeholder as its id: $(curl -sS -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/auth/token/lookup-self" | grep -c "\"id\":\"$VAULT_TOKEN\"")"
echo "agent: aws s3: $(aws --endpoint-url "$AWS_ENDPOINT_URL" s3 cp s3://agent-readable/hello.txt - 2>&1)"
echo "agent: kubectl: $(kubectl get pods 2>&1)"
echo "agent: AWS key in credentials.json: $(grep -o '"AccessKeyId": "[A-Z0-9]*' "$CREDBROKER_SESSION_DIR/aws/credentials.json" | cut -c17-)"
cp "$CREDBROKER_SESSION_DIR/vault/token" /workspace/placeholder
{ env; cat "$CREDBROKER_SESSION_DIR"/vault/token "$CREDBROKER_SESSION_DIR"/aws/* "$CREDBROKER_SESSION_DIR"/kube/*; } >/workspace/saw.txt 2>&1
SH
  CREDBROKER_CONFIG=$px/config.yaml run "$CB" --log-level warn run --role agent-proxy --sandbox bwrap --project "$px/project" -- sh /workspace/agent.sh
  echo '$ VAULT_TOKEN=<the placeholder> vault token lookup   (straight at Vault, not through the gateway)'
  if VAULT_TOKEN=$(cat "$px/project/placeholder") "$VAULT" token lookup >/dev/null 2>&1; then
    echo "FAIL: a placeholder works at Vault"; exit 1
  fi
  echo "rejected: a placeholder is worthless outside the session's gateway"
  echo '$ credbroker guard scan --no-revoke <everything the agent could read>'
  CREDBROKER_CONFIG=$px/config.yaml "$CB" guard scan --no-revoke -o json "$px/project/saw.txt" >"$px/scan.json" || true
  python3 - "$px/scan.json" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))["findings"]
real = [x["what"] for x in f if not x["what"].startswith("placeholder for ")]
print("guard: %d placeholders found, %d real secrets" % (len(f) - len(real), len(real)))
if real or not f:
    sys.exit("FAIL: " + ("real secrets reached the sandbox: %s" % real if real else "the scan found nothing"))
PY
else
  echo "proxy part skipped: bubblewrap is missing or cannot create namespaces here (scripts/install-deps.sh)"
fi

say "Audit log (no secret values)"
tail -n 6 "$work/state/audit.log"
if grep -q -e "$token" -e "$ksk" -e "$ktok" -e "$kubetok" -e "${kubetok##*.}" -e "$MINIO_SECRET" "$work/state/audit.log" "$work/broker.log" "$work/state/leases.db" "$KUBE_AUDIT_LOG"; then
  echo "FAIL: a secret in the logs or the lease store"; exit 1
fi
say "demo finished"
