# Local stack layout shared by up, down and call (sourced).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN_DIR=${SAFEHARBOR_RUN_DIR:-$ROOT/.run}
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
PG_PORT=${SAFEHARBOR_PG_PORT:-54320}
REDIS_PORT=${SAFEHARBOR_REDIS_PORT:-63790}
PROMETHEUS_PORT=${SAFEHARBOR_PROMETHEUS_PORT:-9090}
# service name, binary, gRPC port, metrics port: from the one table, services/services.json
mapfile -t SERVICES < <(/usr/bin/python3 -c '
import json, sys
for s in json.load(open(sys.argv[1]))["services"]:
    print(s["name"], s["binary"], s["grpc_port"], s["metrics_port"])' "$ROOT/services/services.json")
# The gRPC port of a service by name (from SERVICES).
grpc_port_of() {
  local entry name port
  for entry in "${SERVICES[@]}"; do
    read -r name _ port _ <<<"$entry"
    [[ $name == "$1" ]] && { echo "$port"; return 0; }
  done
  return 1
}
