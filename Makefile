# ociruntime — build, install, demo and test.  Run as root on Debian 12.
PREFIX      ?= /usr/local
LIBDIR      := $(PREFIX)/lib/ociruntime
PY_SYSTEM   ?= /usr/bin/python3
VENV        := .venv
PY          := $(VENV)/bin/python
CHECKER     := integration/checker/checker
DEMO_BUNDLE := build/demo-bundle
# qemu-system-x86 boots the pure cgroup v2 guest of test-cgroupv2 (integration/v2guest/).
APT_PACKAGES := python3-venv busybox-static gcc libc6-dev libseccomp2 runc qemu-system-x86 podman containerd
# The cgroup v2 stage: the installed launcher, tested inside a qemu guest with only cgroup2.
V2GUEST     := OCIRUNTIME=$(PREFIX)/bin/ociruntime $(PY_SYSTEM) integration/v2guest/run.py

.PHONY: all deps install uninstall venv checker demo test test-cgroupv2 unit integration lint bench clean

all: venv checker

# System packages the runtime and its tests need (a fresh Debian 12 has none of them).
# Without recommends: qemu-system-x86 would otherwise pull in a GTK user interface.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
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

# Everything: install, lint, unit and integration tests, then the cgroup v2 stage.  The v2 stage
# runs even when the host suite failed, so one run reports both; either failing fails the target.
test: venv checker install lint
	@status=0; \
	OCIRUNTIME=$(PREFIX)/bin/ociruntime $(PY) -m pytest -q tests integration || status=1; \
	$(V2GUEST) || status=1; \
	exit $$status

bench: venv install
	$(PY) bench/lifecycle.py --runtime $(PREFIX)/bin/ociruntime
	$(PY) bench/exec.py --runtime $(PREFIX)/bin/ociruntime

clean:
	rm -rf build $(CHECKER) .pytest_cache
