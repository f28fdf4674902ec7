# fetchfleet — the two commands a fresh machine needs are `make lab` and `make test` (both as root).
SHELL := /bin/bash
VENV  := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: setup lint unit root-test app-test lab-free lab-test test test-intro lab lab-down lab-status pipeline

setup:
	@scripts/setup.sh

lint: setup
	ruff check .
	ruff format --check .
	yamllint -s .
	ansible-lint --profile production --offline

# What needs neither root nor the lab (a bare `pytest` runs the same).
unit: setup
	pytest tests/unit

# What needs root but no lab: real interfaces, nftables' checker, commands as another user.
root-test: setup
	pytest tests/root

app-test: setup
	@if [ -d app/tests ]; then cd app && $(CURDIR)/.venv-app/bin/pytest tests; else echo "app-test: no app/tests yet"; fi

# Refuses in a second, before the long stages, when a lab is running that make test did not
# start (FETCHFLEET_LAB_KEEP=1 tests it as it is, FETCHFLEET_LAB_REPLACE=1 rebuilds it).
lab-free: setup
	python tests/lab/labguard.py

# Brings the lab up from fresh hosts, converges site.yml, runs testinfra against every host,
# converges again (must report changed=0) and tears the lab down (about 55 min).
lab-test: setup
	pytest --durations=40 tests/lab

# Everything CI runs, in order (60–75 min; a first run also builds the lab's base image).
test: test-intro lab-free lint unit root-test app-test lab-test

test-intro:
	@echo "make test: lint, unit, root and app tests, then the lab tests on fresh lab hosts (60-75 min)"

# Bring the lab fleet up, converge it, deploy the app (fab deploy: the one deploy path) and print its URL.
lab: setup
	@echo "make lab: boot the 10 lab hosts, converge them, deploy the app (10-15 min the first time, about 3 after)"
	fab lab.up
	fab converge
	fab deploy --message "make lab"
	@python tests/lab/labguard.py --mark
	fab lab.status
	fab lab.url
	@echo "make test rebuilds this lab from fresh hosts (60-75 min); FETCHFLEET_LAB_KEEP=1 make test tests it as it is"

lab-down: setup
	fab lab.down

lab-status: setup
	fab lab.status

# jenkins/Jenkinsfile's stages on this machine, the lab as staging and as "production":
# build once, deploy, smoke, deploy the same release, smoke. SKIP_TESTS=1 skips lint/unit/app
# tests (make test ran them); STAGING=… PRODUCTION=… name other inventories.
STAGING ?= lab
PRODUCTION ?= lab
pipeline: setup
	fab pipeline --staging $(STAGING) --production $(PRODUCTION) $(if $(SKIP_TESTS),--skip-tests)
