#!/usr/bin/env bash
# The main job: builds the hub and emcoctl, starts three simulated edge clusters (`emco sim`) and
# the hub (`emco serve`) on its embedded store, loads the quick-start sample (examples/quickstart)
# through emcoctl, and keeps both serving until Ctrl-C.
# QUICKSTART_EXIT=1 stops after loading; EMCO_LISTEN overrides 127.0.0.1:9015 and EMCO_SIM_LISTEN
# overrides 127.0.0.1:9016.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
source scripts/ensure-deps.sh

listen="${EMCO_LISTEN:-127.0.0.1:9015}"
sim_listen="${EMCO_SIM_LISTEN:-127.0.0.1:9016}"
work="$repo/.quickstart"
cargo build --quiet --locked -p emco -p emcoctl
bin="$repo/target/debug"

rm -rf "$work"
mkdir -p "$work/data" "$work/out" "$work/kube"

# Chart and profile archives, as `helm package` / upstream's setup scripts make them.
tar -czf "$work/out/hello.tgz" -C examples/quickstart/charts hello
tar -czf "$work/out/hello-profile.tgz" -C examples/quickstart/profiles/hello manifest.yaml override_values.yaml

host="${listen%:*}"; port="${listen##*:}"
{
  for svc in orchestrator clm ncm ovnaction dcm gac dtc hpa-plc sfc sfcclient tac workflowmgr; do
    printf '%s:\n  host: %s\n  port: %s\n' "$svc" "$host" "$port"
  done
} > "$work/emco-cfg.yaml"
{ cat examples/quickstart/values.yaml; printf 'Out: %s\nKubeconfigDir: %s\n' "$work/out" "$work/kube"; } > "$work/values.yaml"

# Simulated edge clusters edge-1..edge-3, one kubeconfig each (what the hub stores per cluster).
"$bin/emco" sim --clusters 3 --prefix edge- --listen "$sim_listen" --kubeconfig-dir "$work/kube" > "$work/sim.log" 2>&1 &
sim=$!
"$bin/emco" serve --listen "$listen" --data "$work/data" 2> "$work/hub.log" &
hub=$!
trap 'kill $hub $sim 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "clusters ready" "$work/sim.log" 2>/dev/null && break
  kill -0 "$sim" 2>/dev/null || { cat "$work/sim.log"; exit 1; }
  sleep 0.1
done
for _ in $(seq 1 100); do
  curl -fsS "http://$listen/healthz" >/dev/null 2>&1 && break
  kill -0 "$hub" 2>/dev/null || { cat "$work/hub.log"; exit 1; }
  sleep 0.1
done

ctl=("$bin/emcoctl" --config "$work/emco-cfg.yaml")
"${ctl[@]}" apply -f examples/quickstart/prerequisites.yaml -v "$work/values.yaml"
"${ctl[@]}" apply -f examples/quickstart/deployment.yaml -v "$work/values.yaml"
"${ctl[@]}" apply -f examples/quickstart/instantiate.yaml -v "$work/values.yaml"
dig=projects/demo/composite-apps/hello-app/v1/deployment-intent-groups/hello-dig
echo
echo "== deploying: emcoctl status --watch (until every resource on every cluster is ready)"
"${ctl[@]}" status "$dig" --watch --interval 500ms --timeout 2m
echo
echo "== upstream's status query: status=ready&output=summary"
curl -fsS "http://$listen/v2/$dig/status?status=ready&output=summary"; echo

echo
echo "== what kubectl sees on each simulated cluster"
if command -v kubectl >/dev/null 2>&1; then
  for cluster in edge-1 edge-2 edge-3; do
    echo "-- $cluster"
    kubectl --kubeconfig "$work/kube/$cluster.kubeconfig" --cache-dir "$work/kubecache" \
      get deployments,services -l emco/deployment-id -o wide
  done
fi

if [ "${QUICKSTART_EXIT:-0}" = "1" ]; then
  exit 0
fi
echo
echo "hub serving on http://$listen (API document: http://$listen/v2/openapi.json)"
echo "simulated clusters on http://$sim_listen: kubectl --kubeconfig $work/kube/edge-1.kubeconfig get all -A"
echo "status:    $bin/emcoctl --config $work/emco-cfg.yaml status $dig"
echo "terminate: $bin/emcoctl --config $work/emco-cfg.yaml apply -f examples/quickstart/terminate.yaml -v $work/values.yaml"
echo "Ctrl-C to stop"
wait "$hub"
