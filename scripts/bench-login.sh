#!/usr/bin/env bash
# Memory of `rackbox serve` under a flood of concurrent wrong logins (issue 13 part 2): VmRSS
# before, peak (VmHWM) and after N concurrent POST /api/v1/auth/login with a wrong password,
# each for its own user name, with the failure throttle off so that every login is hashed.
# Usage: scripts/bench-login.sh [N] [RACKBOX_BINARY]   (default 200, target/release/rackbox)
set -euo pipefail
n=${1:-200}
bin=${2:-target/release/rackbox}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'admin-password-for-bench' >"$dir/pw"
cat >"$dir/rackbox.toml" <<TOML
state_dir = "$dir/state"
[http]
listen = "127.0.0.1:$port"
[auth]
admin_password_file = "$dir/pw"
login_free_failures_per_user = 1000000
login_free_failures_per_source = 1000000
login_hash_queue = 65536
login_hash_wait_secs = 600
[log]
target = "stderr"
level = "warn"
TOML
mkdir -p "$dir/state"
"$bin" serve --config "$dir/rackbox.toml" 2>"$dir/log" &
pid=$!
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$dir/log"; exit 1; }
    sleep 0.1
done
kib() { awk -v f="$1" '$1 == f {print $2}' "/proc/$pid/status"; }
login() {
    curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' \
        -d "{\"username\":\"u$1\",\"password\":\"wrong-password\"}" \
        "http://127.0.0.1:$port/api/v1/auth/login"
}
export -f login
export port
echo "RSS idle: $(kib VmRSS:) KiB"
login 0 >/dev/null
echo "RSS after one login: $(kib VmRSS:) KiB"
start=$(date +%s.%N)
codes=$(seq 1 "$n" | xargs -P "$n" -I{} bash -c 'login {}' | sort | uniq -c | tr '\n' ' ')
end=$(date +%s.%N)
echo "answers: $codes"
echo "$n concurrent wrong logins: $(echo "$end - $start" | bc) s"
echo "RSS peak (VmHWM): $(kib VmHWM:) KiB, after: $(kib VmRSS:) KiB"
