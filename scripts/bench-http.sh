#!/usr/bin/env bash
# HTTP serving benchmark: one image to many concurrent clients on loopback, rackbox beside nginx
# serving the same file. Prints a table; asserts nothing.
#   scripts/bench-http.sh [SIZE_MIB=1024] [CLIENTS=50]
# Needs: nginx (apt-get install nginx-light or nginx), curl; builds the release binary unless
# RACKBOX_BIN names one (e.g. the static one of scripts/build-static.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
clients=${2:-50}
command -v nginx >/dev/null || { echo "bench-http.sh: needs nginx (apt-get install -y nginx-light)" >&2; exit 1; }
bin=${RACKBOX_BIN:-target/release/rackbox}
[ -n "${RACKBOX_BIN:-}" ] || cargo build --release --quiet
work=$(mktemp -d /tmp/rbx-bench-http.XXXXXX)
# nginx workers run as an unprivileged user: they must be able to read the file.
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "making a ${size_mib} MiB image"
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/image.raw"

# rackbox
rport=$(free_port)
mkdir -p "$work/state"
echo "bench-password" > "$work/pw"
cat > "$work/rackbox.toml" <<TOML
state_dir = "$work/state"
[http]
listen = "127.0.0.1:$rport"
[auth]
admin_password_file = "$work/pw"
[log]
level = "warn"
target = "stderr"
TOML
"$bin" serve --config "$work/rackbox.toml" 2>"$work/rackbox.log" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$rport/healthz" >/dev/null && break; sleep 0.1; done
export RACKBOX_URL="http://127.0.0.1:$rport" XDG_CONFIG_HOME="$work/home"
"$bin" login --username admin --password-file "$work/pw" >/dev/null
"$bin" image import bench "$work/image.raw" --os custom --arch amd64 >/dev/null
rurl="http://127.0.0.1:$rport/images/bench"

# nginx on the same file
nport=$(free_port)
mkdir -p "$work/www" "$work/nginx"
ln "$work/image.raw" "$work/www/image.raw" 2>/dev/null || cp "$work/image.raw" "$work/www/image.raw"
chmod 755 "$work/www"; chmod 644 "$work/www/image.raw"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$nport; root $work/www; }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:$nport/image.raw" && break; sleep 0.1; done
nurl="http://127.0.0.1:$nport/image.raw"

run() { # url -> seconds for $clients concurrent full downloads
  local url=$1 start end
  start=$(date +%s.%N)
  for _ in $(seq 1 "$clients"); do curl -sf -o /dev/null --max-time 600 "$url" & done
  wait_ok=0
  for job in $(jobs -p); do
    case " ${pids[*]} " in *" $job "*) continue;; esac
    wait "$job" || wait_ok=1
  done
  end=$(date +%s.%N)
  [ "$wait_ok" = 0 ] || echo "  (some downloads failed)" >&2
  echo "$end - $start" | bc -l
}

printf '%-10s %8s %12s %14s\n' server clients seconds "aggregate MiB/s"
for name in rackbox nginx; do
  url=$rurl; [ "$name" = nginx ] && url=$nurl
  secs=$(run "$url")
  rate=$(echo "$size_mib * $clients / $secs" | bc -l)
  printf '%-10s %8d %12.2f %14.0f\n' "$name" "$clients" "$secs" "$rate"
done
rss=$(awk '/VmRSS/ {print $2}' "/proc/${pids[0]}/status")
echo "rackbox RSS after the run: ${rss} KiB (the file is streamed, never held in memory)"
