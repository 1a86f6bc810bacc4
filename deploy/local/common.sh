# Shared by deploy/local/run-demo.sh and deploy/cluster/run-cluster.sh (sourced;
# set prog and run_dir first): install, build, loopback ports, and secrets.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${ROLLERTRACE_BUILD_DIR:-$root/build}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
install_and_build() {
  step "Installing missing Debian packages"
  bash "$root/deploy/local/install-deps.sh"
  step "Building"
  bash "$root/deploy/local/build.sh"
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=" "
pick_port() {  # VAR DEFAULT: the default port, or the next free one above it
  local p=$2
  while port_busy "$p" || [[ "$taken" == *" $p "* ]]; do p=$((p + 1)); done
  [ "$p" = "$2" ] || echo "$prog: port $2 is busy, using $p instead" >&2
  taken="$taken$p "
  printf -v "$1" '%s' "$p"
}
wait_port() {  # port, log name, pid
  for _ in $(seq 1 600); do
    kill -0 "$3" 2>/dev/null || break
    port_busy "$1" && return 0
    sleep 0.1
  done
  echo "$prog: $2 did not start (nothing answers on port $1); see $run_dir/$2.log" >&2
  tail -n 20 "$run_dir/$2.log" >&2; exit 1
}
make_secrets() {  # a pseudonym secret and one bearer token per role, in $run_dir
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$run_dir/pseudonym.secret"
  : >"$run_dir/tokens"
  for role in device auditor admin; do
    token="$role-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "$role $token" >>"$run_dir/tokens"
    echo "$token" >"$run_dir/token-$role"
  done
  chmod 600 "$run_dir/pseudonym.secret" "$run_dir/tokens" "$run_dir"/token-*
}
