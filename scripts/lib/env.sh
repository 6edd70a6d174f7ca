# Local stack layout shared by up, down and call (sourced).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN_DIR=${SAFEHARBOR_RUN_DIR:-$ROOT/.run}
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
PG_PORT=${SAFEHARBOR_PG_PORT:-54320}
REDIS_PORT=${SAFEHARBOR_REDIS_PORT:-63790}
PROMETHEUS_PORT=${SAFEHARBOR_PROMETHEUS_PORT:-9090}
# service name, binary, gRPC port, metrics port
SERVICES=(
  "directory directory-service 50051 9461"
  "beds beds-service 50052 9462"
  "referrals referral-service 50053 9463"
  "fees fee-service 50054 9464"
)
