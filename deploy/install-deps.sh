#!/usr/bin/env bash
# Installs what Gantry needs on a Debian machine and is missing: PostgreSQL's
# server binaries, debootstrap (base images), git, the OpenSSH client,
# Chromium (the dashboard's browser tests drive it headless) and Pebble (the
# ACME test server the automatic HTTPS tests run against).
# Docker must already be installed and running. Safe to run again: it only
# installs what is missing.
set -euo pipefail

step() { printf '==> %s\n' "$*"; }
fail() { printf ' !   %s\n' "$*" >&2; exit 1; }

need=()
have_pg() {
	command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1 && return 0
	compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}
have_pg || need+=(postgresql)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v git >/dev/null 2>&1 || need+=(git)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
have_chromium() {
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1
}
have_chromium || need+=(chromium fonts-liberation)
command -v pebble >/dev/null 2>&1 || need+=(pebble)

if ((${#need[@]})); then
	step "Installing missing packages: ${need[*]}"
	[ "$(id -u)" = 0 ] || SUDO=sudo
	if [[ " ${need[*]} " == *" postgresql "* ]]; then
		# Gantry runs its own private PostgreSQL; keep Debian from creating
		# and starting a system-wide cluster.
		${SUDO:-} mkdir -p /etc/postgresql-common/createcluster.d
		echo 'create_main_cluster = false' | ${SUDO:-} tee /etc/postgresql-common/createcluster.d/gantry.conf >/dev/null
	fi
	${SUDO:-} apt-get update -qq
	DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends "${need[@]}"
else
	step "PostgreSQL, debootstrap, git, ssh, Chromium and Pebble are installed"
fi

command -v go >/dev/null 2>&1 || fail "Go is missing: install Go 1.21 or newer (it fetches the toolchain go.mod asks for)"
command -v docker >/dev/null 2>&1 || fail "Docker is missing: install Docker Engine (apt-get install docker.io) and start it"
docker info >/dev/null 2>&1 || fail "Docker is installed but not reachable: start it (systemctl start docker) or set DOCKER_HOST"
step "Docker is running"
