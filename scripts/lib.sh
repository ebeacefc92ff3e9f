# Shared helpers for the project's scripts: idempotent installs and service starts.
# Sourced, not run.

# Installs Debian packages that are missing; runs `apt-get update` once per machine boot.
ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    if [ ! -f /tmp/.sipjab-apt-updated ]; then
        apt-get update -q >/dev/null && touch /tmp/.sipjab-apt-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# Installs PyPI packages that python3 cannot import yet (module=package pairs). Debian's own
# python3 comes without pip and refuses system-wide installs (PEP 668); the test peers are
# the machine's only Python users, so that guard is lifted here.
ensure_python() {
    for pair in "$@"; do
        local module=${pair%%=*} package=${pair#*=}
        python3 -c "import $module" 2>/dev/null && continue
        python3 -m pip --version >/dev/null 2>&1 || ensure_packages python3-pip
        PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q "$package" >&2
    done
}

# Waits until a TCP port accepts connections (host port seconds).
wait_port() {
    local host=$1 port=$2 secs=${3:-30}
    for _ in $(seq $((secs * 10))); do
        (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $host:$port after ${secs}s" >&2
    return 1
}

# Starts MariaDB on 127.0.0.1:3306 if it is not answering; installs it if missing.
# Sets STARTED_MARIADB=1 when this call started it.
ensure_mariadb() {
    STARTED_MARIADB=0
    if mariadb-admin -uroot -h127.0.0.1 ping >/dev/null 2>&1; then
        return 0
    fi
    ensure_packages mariadb-server mariadb-client
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1
    STARTED_MARIADB=1
    for _ in $(seq 300); do
        mariadb-admin -uroot -h127.0.0.1 ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    mariadb-admin -uroot -h127.0.0.1 ping >/dev/null
    # A fresh install authenticates root by socket only; tests connect over TCP without a password.
    mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket" 2>/dev/null || true
}

stop_mariadb_if_started() {
    if [ "${STARTED_MARIADB:-0}" = 1 ]; then
        start-stop-daemon --stop --oknodo --exec /usr/sbin/mariadbd >/dev/null || true
    fi
}
