# ociruntime — build, install, demo and test.  Run as root on Debian 12.
PREFIX      ?= /usr/local
LIBDIR      := $(PREFIX)/lib/ociruntime
PY_SYSTEM   ?= /usr/bin/python3
VENV        := .venv
PY          := $(VENV)/bin/python
CHECKER     := integration/checker/checker
DEMO_BUNDLE := build/demo-bundle
# qemu-system-x86 boots the pure cgroup v2 guest of test-cgroupv2 (integration/v2guest/); docker.io
# is the Docker Engine of integration/test_docker.py; uidmap (newuidmap/newgidmap) maps the
# subordinate id ranges of rootless containers and rootless podman (integration/test_rootless.py);
# criu does checkpoint/restore; systemd and dbus are PID 1 and the system bus in the guest of
# test-systemd; containernetworking-plugins has the loopback CNI plugin of integration/test_cri.py.
APT_PACKAGES := python3-venv busybox-static gcc libc6-dev libseccomp2 runc qemu-system-x86 podman containerd \
                docker.io uidmap criu systemd dbus containernetworking-plugins
# Packages with daemons (docker.io, containerd) must not start them on install: a dockerd would
# make docker0 and iptables rules in the host's network namespace.  invoke-rc.d asks this policy
# first (101: action forbidden); it is written only if the machine has none, and removed again.
POLICY_RC   := /usr/sbin/policy-rc.d
# The cgroup v2 stage: the installed launcher, tested inside a qemu guest with only cgroup2.
V2GUEST     := OCIRUNTIME=$(PREFIX)/bin/ociruntime $(PY_SYSTEM) integration/v2guest/run.py
# The systemd stage: the same guest with systemd as PID 1, given a cgroup layout (v2 or hybrid).
SDGUEST     := $(V2GUEST) --systemd --layout
# The conformance stage: the public OCI runtime-tools validation suite, built from the source
# tarball in ../shared/conformance; the driver and its rules: integration/conformance/run.py.
CONF_SHARED := ../shared/conformance
CONF_TREE   := build/runtime-tools
GO_BIN      := /usr/lib/go-1.23/bin
GO_APT_LIST := /etc/apt/sources.list.d/bookworm-backports.list
# Offline build: the tree vendors its modules; caches stay under build/.
GO_ENV      := PATH=$(GO_BIN):$$PATH GOFLAGS=-mod=vendor GOTOOLCHAIN=local GOPROXY=off \
               GOCACHE=$(CURDIR)/build/go-cache GOPATH=$(CURDIR)/build/go-path
CONFORMANCE := $(PY_SYSTEM) integration/conformance/run.py --tree $(CONF_TREE)
CONF_STAGE  := if [ -d $(CONF_SHARED) ]; then $(MAKE) --no-print-directory conformance-run; \
               else echo "conformance: skipped: $(CONF_SHARED) not found"; fi

.PHONY: all deps install uninstall venv checker demo demo-net test test-cgroupv2 unit integration lint bench clean \
        test-systemd conformance conformance-go conformance-build conformance-run

all: venv checker

# System packages the runtime and its tests need (a fresh Debian 12 has none of them).
# Without recommends: qemu-system-x86 would otherwise pull in a GTK user interface.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ ! -e $(POLICY_RC) ] && [ ! -L $(POLICY_RC) ]; then \
	    trap 'rm -f $(POLICY_RC)' EXIT; trap 'exit 130' INT TERM HUP; \
	    printf '#!/bin/sh\nexit 101\n' > $(POLICY_RC) && chmod 0755 $(POLICY_RC); \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $$missing >/dev/null; \
	fi

# A self-contained install: its own virtual environment, a launcher that runs the interpreter
# directly in isolated mode (-I: no PYTHON* variables, no user site, no cwd on sys.path) and
# without the site module (-S, ~2 ms per start): the launcher puts the venv's site-packages on
# sys.path itself.
install: deps
	rm -rf $(LIBDIR).new && $(PY_SYSTEM) -m venv $(LIBDIR).new
	$(LIBDIR).new/bin/pip install -q --disable-pip-version-check .
	site=$$($(LIBDIR).new/bin/python -I -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
	cp -r schemas "$$site/ociruntime/schemas"
	$(LIBDIR).new/bin/python -I -m compileall -q $(LIBDIR).new/lib >/dev/null
	@# Swap the finished tree in with two renames, so running containers' commands never see a
	@# half-installed runtime; the launcher names the final paths.
	rm -rf $(LIBDIR).old && if [ -d $(LIBDIR) ]; then mv $(LIBDIR) $(LIBDIR).old; fi
	mv $(LIBDIR).new $(LIBDIR) && rm -rf $(LIBDIR).old
	mkdir -p $(PREFIX)/bin
	site=$$($(LIBDIR)/bin/python -I -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
	printf '#!%s -IS\nimport sys\nsys.path.append("%s")\nfrom ociruntime.cli.main import entry\nentry()\n' \
	  "$(LIBDIR)/bin/python" "$$site" > $(PREFIX)/bin/ociruntime.tmp
	chmod 0755 $(PREFIX)/bin/ociruntime.tmp && mv $(PREFIX)/bin/ociruntime.tmp $(PREFIX)/bin/ociruntime
	@$(PREFIX)/bin/ociruntime --version | head -1

uninstall:
	rm -rf $(LIBDIR) $(PREFIX)/bin/ociruntime

# Development environment: editable install plus the test tools.
venv: deps $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml
	$(PY_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

$(CHECKER): integration/checker/checker.c
	gcc -static -O2 -Wall -Wextra -o $@ $<
checker: deps $(CHECKER)

# Run a busybox container from a freshly built bundle with the installed runtime.
demo: install
	rm -rf $(DEMO_BUNDLE) && $(PY_SYSTEM) bundles/build.py $(DEMO_BUNDLE) \
	  --args sh -c 'echo "hello from $$(hostname), pid $$$$ in its own namespaces"; cat /etc/os-release 2>/dev/null; uname -a'
	$(PREFIX)/bin/ociruntime run --bundle $(DEMO_BUNDLE) demo-$$$$

# Issue 9's demo: an image archive built here -> two bundles -> two containers on one bridge,
# all inside a throw-away network namespace (bundles/demo_net.py); everything removed at the end.
demo-net: install
	$(PY_SYSTEM) bundles/demo_net.py --runtime $(PREFIX)/bin/ociruntime --work build/demo-net

lint: venv
	$(VENV)/bin/ruff check ociruntime tests integration bundles bench

unit: venv checker
	$(PY) -m pytest -q tests

# Integration tests drive the installed launcher: what users run is what is tested.
integration: venv checker install
	OCIRUNTIME=$(PREFIX)/bin/ociruntime $(PY) -m pytest -q integration

# The cgroup tests again on pure cgroup v2, in a throw-away qemu guest (integration/v2guest/README.md).
test-cgroupv2: venv checker install
	$(V2GUEST)

# The tests that need systemd as PID 1 (the systemd cgroup driver), in the same qemu guest booted
# with systemd: once on pure cgroup v2, once on systemd's hybrid layout; both run, either failing
# fails the target (integration/v2guest/README.md, "systemd as PID 1").  Part of `make test`.
test-systemd: venv checker install
	@status=0; \
	$(SDGUEST) v2 || status=1; \
	$(SDGUEST) hybrid || status=1; \
	exit $$status

# The OCI runtime-tools validation suite against the installed launcher; the expected failures
# (with their reasons) are in integration/conformance/expected-failures.txt.  Without
# ../shared/conformance (where the suite's source tarball lives) the stage is skipped.
conformance: install
	@$(CONF_STAGE)

# Go >= 1.21 (Debian 12 has 1.19): golang-1.23-go from bookworm-backports, once.
conformance-go:
	@if [ ! -x $(GO_BIN)/go ]; then \
	  if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	    echo "adding $(GO_APT_LIST)"; \
	    echo "deb http://deb.debian.org/debian bookworm-backports main" > $(GO_APT_LIST); \
	  fi; \
	  echo "installing golang-1.23-go from bookworm-backports"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    -t bookworm-backports golang-1.23-go >/dev/null; \
	fi
	@$(GO_BIN)/go version

# Unpack the tarball and build runtimetest plus the validation programs, unless the tree was
# already built from this very tarball (its checksum is the stamp).
conformance-build: conformance-go
	@set -e; tarball=$$(ls $(CONF_SHARED)/runtime-tools-*.tar.gz 2>/dev/null | tail -1); \
	if [ -z "$$tarball" ]; then echo "conformance: no runtime-tools-*.tar.gz in $(CONF_SHARED)" >&2; exit 1; fi; \
	sum=$$(sha256sum "$$tarball" | cut -d' ' -f1); \
	if [ "$$(cat $(CONF_TREE)/.built 2>/dev/null)" = "$$sum" ]; then \
	  echo "conformance: $(CONF_TREE) already built from $$tarball"; exit 0; \
	fi; \
	echo "conformance: building $(CONF_TREE) from $$tarball"; \
	rm -rf $(CONF_TREE) $(CONF_TREE).new && mkdir -p $(CONF_TREE).new; \
	tar -xzf "$$tarball" -C $(CONF_TREE).new --strip-components=1; \
	MAKEFLAGS= $(GO_ENV) $(MAKE) --no-print-directory -C $(CONF_TREE).new runtimetest validation-executables >/dev/null; \
	echo "$$sum" > $(CONF_TREE).new/.built; \
	mv $(CONF_TREE).new $(CONF_TREE)

conformance-run: conformance-build
	$(CONFORMANCE) --runtime $(PREFIX)/bin/ociruntime

# Everything: install, lint, unit and integration tests, then the cgroup v2 stage, then the
# conformance suite.  Every stage runs even when an earlier one failed, so one run reports all;
# any failing fails the target.
test: venv checker install lint
	@status=0; \
	OCIRUNTIME=$(PREFIX)/bin/ociruntime $(PY) -m pytest -q tests integration || status=1; \
	$(V2GUEST) || status=1; \
	$(SDGUEST) v2 || status=1; \
	$(SDGUEST) hybrid || status=1; \
	$(CONF_STAGE) || status=1; \
	exit $$status

# The benchmark suite (bench/all.py): ociruntime and runc side by side, one markdown table.
bench: venv install
	$(PY) bench/all.py --runtime $(PREFIX)/bin/ociruntime

clean:
	rm -rf build $(CHECKER) .pytest_cache
