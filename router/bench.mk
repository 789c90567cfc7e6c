# bench-router: Gantry's router next to nginx and the backend alone, in one
# run on this machine (see router/bench and docs/BENCHMARKS.md): access log,
# app log (the router as gantryd up runs it), HTTPS and HTTP/2 rows. Included
# by the top-level Makefile. Flags go through BENCH_ROUTER_FLAGS, e.g.
#   make bench-router BENCH_ROUTER_FLAGS='-duration 30s -rounds 7 -rows app-log,https'
# The benchmark runs a private nginx instance; where installing the package
# also starts Debian's system-wide nginx service, that one is left alone.

GO                 ?= go
BENCH_ROUTER_FLAGS ?=

## bench-router: router vs nginx vs the backend alone under wrk and h2load (installs nginx, wrk and h2load when missing)
bench-router:
	@need=""; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$$need nginx"; \
	command -v wrk >/dev/null 2>&1 || need="$$need wrk"; \
	command -v h2load >/dev/null 2>&1 || need="$$need nghttp2-client"; \
	if [ -n "$$need" ]; then \
		echo "==> Installing missing packages:$$need"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$need; \
	fi
	$(GO) run ./router/bench $(BENCH_ROUTER_FLAGS)
