# ociruntime — build, install, demo and test.  Run as root on Debian 12.
PREFIX      ?= /usr/local
LIBDIR      := $(PREFIX)/lib/ociruntime
PY_SYSTEM   ?= /usr/bin/python3
VENV        := .venv
PY          := $(VENV)/bin/python
CHECKER     := integration/checker/checker
DEMO_BUNDLE := build/demo-bundle
APT_PACKAGES := python3-venv busybox-static gcc libc6-dev libseccomp2 runc

.PHONY: all deps install uninstall venv checker demo test unit integration lint bench clean

all: venv checker

# System packages the runtime and its tests need (a fresh Debian 12 has none of them).
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# A self-contained install: its own virtual environment, a launcher that runs the interpreter
# directly in isolated mode (-I: no PYTHON* variables, no user site, no cwd on sys.path) and
# without the site module (-S, ~2 ms per start): the launcher puts the venv's site-packages on
# sys.path itself.
install: deps
	$(PY_SYSTEM) -m venv --clear $(LIBDIR)
	$(LIBDIR)/bin/pip install -q --disable-pip-version-check .
	$(LIBDIR)/bin/python -I -m compileall -q $(LIBDIR)/lib >/dev/null
	mkdir -p $(PREFIX)/bin
	site=$$($(LIBDIR)/bin/python -I -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
	rm -rf "$$site/ociruntime/schemas" && cp -r schemas "$$site/ociruntime/schemas" && \
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

# Everything: install, lint, unit and integration tests.
test: venv checker install lint
	OCIRUNTIME=$(PREFIX)/bin/ociruntime $(PY) -m pytest -q tests integration

bench: venv install
	$(PY) bench/lifecycle.py --runtime $(PREFIX)/bin/ociruntime

clean:
	rm -rf build $(CHECKER) .pytest_cache
