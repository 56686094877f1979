# kiln's front door. `make serve` fetches the default model if needed and serves it;
# `make test` runs the whole test suite (what CI runs).
MODEL ?= gemma-3-270m-q4_k_m
CARGO ?= cargo

.PHONY: serve test models build bench clients

models:
	scripts/fetch-models

build:
	$(CARGO) build --release -p kiln-server

serve: models build
	target/release/kiln serve

test: models
	scripts/test

bench: models
	$(CARGO) bench --bench kernels
