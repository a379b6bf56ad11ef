# Shared by demo.sh and run.sh: make sure redis-server exists.

# need_redis installs redis-server from the distribution's packages when it
# is missing, saying what it does.
need_redis() {
  if command -v redis-server >/dev/null 2>&1; then
    return
  fi
  echo "indexer: redis-server is not installed; installing it from the distribution's packages (apt-get install redis-server)..."
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "indexer: need root or sudo to install redis-server; install it yourself (apt-get install redis-server) and run again" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  # The package starts a system-wide instance on 6379; the demo uses its own.
  echo "indexer: installed $(redis-server --version | cut -d' ' -f3)"
}
