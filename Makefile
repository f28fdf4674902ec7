# fetchfleet — the two commands a fresh machine needs are `make lab` and `make test` (both as root).
SHELL := /bin/bash
VENV  := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: setup lint unit app-test lab-test test lab lab-down lab-status

setup:
	@scripts/setup.sh

lint: setup
	ruff check .
	ruff format --check .
	yamllint -s .
	ansible-lint --profile production --offline

unit: setup
	pytest tests/unit

app-test: setup
	@if [ -d app/tests ]; then cd app && $(CURDIR)/.venv-app/bin/pytest tests; else echo "app-test: no app/tests yet"; fi

# Brings the lab up, converges site.yml, runs testinfra against every host, converges again
# (must report changed=0) and tears the lab down.
lab-test: setup
	pytest tests/lab

test: lint unit app-test lab-test

# Bring the lab fleet up, converge it, deploy the app (playbooks/deploy.yml) and print its URL.
lab: setup
	fab lab.up
	fab converge
	ansible-playbook playbooks/deploy.yml
	fab lab.status
	fab lab.url

lab-down: setup
	fab lab.down

lab-status: setup
	fab lab.status
