# The verbs a person types. Each sets up what it needs on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := tests/node/node_modules/.installed
BUF_STAMP  := scripts/buf/node_modules/.installed
BUF        := $(CURDIR)/scripts/buf/node_modules/.bin/buf

.PHONY: install run run-cluster debs test test-fault test-fault-cluster lint proto bench bench-deps bench-peers etcd clean FORCE

MODULES := $(VENV)/.modules

install: $(STAMP)

# The editable install is a tree of links to each module (setuptools' strict mode, so that mypy sees
# the tidelog package too): a module added or removed means installing again. This list changes then.
$(MODULES): FORCE
	@mkdir -p $(VENV)
	@find client broker scripts/bench protos/tidelog -name '*.py' -not -path '*/__pycache__/*' | sort > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@

$(STAMP): pyproject.toml $(MODULES)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

FORCE:

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(BUF_STAMP): scripts/buf/package.json scripts/buf/package-lock.json
	cd scripts/buf && npm ci --no-audit --no-fund --loglevel=error
	touch $(BUF_STAMP)

## run: start the broker on 127.0.0.1:50051 with its data in ./data, and its web console on http://127.0.0.1:8080
run: install
	$(BIN)/tidelog serve --console-listen 127.0.0.1:8080

## etcd: Debian's etcd-server, the cluster's coordination store (its tests start their own on loopback)
etcd:
	@command -v etcd >/dev/null || { \
		$$(test $$(id -u) = 0 || echo sudo) apt-get update && \
		$$(test $$(id -u) = 0 || echo sudo) apt-get install -y etcd-server; }

## run-cluster: one etcd and three brokers on 127.0.0.1:50051-50053, data in ./data-cluster (Ctrl-C stops them)
run-cluster: install etcd
	$(PY) scripts/run_cluster.py

## debs: the Debian packages the tests use (etcd-server, chromium, kcat), in one apt-get when any is missing
DEBS := etcd:etcd-server chromium:chromium kcat:kcat
debs:
	@missing=$$(for d in $(DEBS); do command -v $${d%%:*} >/dev/null || echo $${d#*:}; done); \
	if [ -n "$$missing" ]; then \
		sudo=$$(test $$(id -u) = 0 || echo sudo); $$sudo apt-get update && $$sudo apt-get install -y $$missing; \
	fi

## test: the whole suite (unit and integration, grpcurl, a Node.js client, Kafka clients and a browser included)
test: install $(NODE_STAMP) debs
	$(PY) -m pytest

## test-fault: the crash harness, long: 20 SIGKILLs of the broker while 1M records are produced
test-fault: install
	$(PY) scripts/crash_harness.py --kills 20 --records 1000000 --partitions 4

## test-fault-cluster: the crash harness on 3 brokers: 21 kills and pauses, one broker at a time, over 1M records
test-fault-cluster: install etcd
	$(PY) scripts/crash_harness_cluster.py --faults 21 --records 1000000 --partitions 6

## lint: ruff, mypy, and buf (the protos' style, and no breaking change since the previous commit)
lint: install $(BUF_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	cd protos && $(BUF) lint
	@# Uncommitted proto changes are judged against HEAD; a clean tree's last commit against the one before.
	@if ! git diff --quiet HEAD -- protos; then against=HEAD; else against=HEAD~1; fi; \
	if git rev-parse -q --verify $$against >/dev/null; then \
		echo "buf breaking --against $$against"; cd protos && $(BUF) breaking --against "../.git#ref=$$against,subdir=protos"; \
	else echo "buf breaking: no previous commit to compare with (a shallow clone?)"; fi

## proto: regenerate tidelog.v1 stubs from protos/tidelog/v1/*.proto
proto: install
	PATH=$(BIN):$$PATH $(PY) scripts/gen_protos.py

## bench: produce and consume throughput, end-to-end latency
bench: install
	$(BIN)/tidelog bench $(BENCH_ARGS)

## bench-deps: Debian's redis-server and nats-server, and their Python clients (for bench-peers)
bench-deps: install
	{ command -v redis-server && { command -v nats-server || test -x /usr/sbin/nats-server; }; } >/dev/null || \
		($$(test $$(id -u) = 0 || echo sudo) apt-get update && \
		 $$(test $$(id -u) = 0 || echo sudo) apt-get install -y redis-server nats-server)
	$(PY) -m pip install --quiet -e '.[dev,bench]' --config-settings editable_mode=strict

## bench-peers: the benchmark beside Redis Streams and NATS JetStream, in the same run
bench-peers: bench-deps
	$(BIN)/tidelog bench --vs redis,nats $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build tests/node/node_modules scripts/buf/node_modules .pytest_cache .mypy_cache .ruff_cache
