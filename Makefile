# aullm — setup, demo, tests and benchmarks. `make demo` and `make test` work on a fresh Debian 12 machine.

SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-libav gstreamer1.0-tools libopencv-dev clang libclang-dev \
	libjpeg62-turbo-dev pkg-config python3-venv
TEST_APT_PACKAGES := chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEV_BIN := target/debug/aullm
REL_BIN := target/release/aullm
DEMO_OUT ?= out/demo
# What the demo reads (ONNX Runtime, the face detector, the reasoner's base weights, SynthME's photo,
# Megamind.avi): the other artefacts (identity photos, liblsl) come with `make setup`.
DEMO_MODELS := onnxruntime blazeface-front blazeface-back smollm2-135m astronaut megamind
PYTHON ?= python3
VENV := .venv

.PHONY: setup system-packages test-packages python-test-deps models demo test lint bench bench-live bench-batch loso-default clean fuzz soak

## One build for everything a newcomer runs: `make demo` and `make test` share the dev profile
## (dependencies at opt-level 3, our crate at 2), so the tests after the demo build only the test
## targets. Release builds are for the benchmarks.
## setup: system packages (only those missing; Chromium for the monitor test), the Python test
## clients, the build, verified model artefacts. Idempotent.
setup: system-packages test-packages python-test-deps
	$(CARGO) build --locked
	$(DEV_BIN) models fetch --all

# Installs the packages named in $(1) that dpkg does not have.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "system packages present: $(1)"; fi
endef

system-packages:
	$(call apt_install,$(APT_PACKAGES))

## test-packages: what only the tests need (headless Chromium for the live monitor page).
test-packages:
	$(call apt_install,$(TEST_APT_PACKAGES))

## python-test-deps: the real clients the tests drive (websockets, pylsl), pandas (batch CSV) and
## pyxdf (README's XDF recipe) in a local venv.
python-test-deps:
	@if $(VENV)/bin/python -c 'import websockets, pylsl, pandas, pyxdf' 2>/dev/null; then echo "python test packages present"; \
	else ( [ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV) ) && $(VENV)/bin/pip install -q -r tests/events/requirements.txt; fi

## demo: one build (the dev profile the tests share), verified models, then: render a SynthME long
## video, run the whole pipeline on it with models/default, write the HTML report with the ground
## truth beside the events, print the events beside the truth; also `aullm faces` on Megamind.avi.
demo: system-packages
	$(CARGO) build --locked
	$(DEV_BIN) models fetch $(DEMO_MODELS)
	$(DEV_BIN) doctor
	$(DEV_BIN) synth $(DEMO_OUT)/synth --preset bench --subjects 1 --clips 0 --long-videos 1
	$(DEV_BIN) run $(DEMO_OUT)/synth/videos/001_1.avi --sink jsonl:$(DEMO_OUT)/events.jsonl \
		--truth $(DEMO_OUT)/synth --report $(DEMO_OUT)/report.html --summary $(DEMO_OUT)/summary.json
	$(DEV_BIN) faces "$$($(DEV_BIN) models path megamind)" --out $(DEMO_OUT)/faces --crops $(DEMO_OUT)/faces/crops.mkv
	@echo "report:  $(DEMO_OUT)/report.html   (open it in a browser)"
	@echo "outputs: $(DEMO_OUT)/events.jsonl  $(DEMO_OUT)/summary.json  $(DEMO_OUT)/faces/"

## test: formatting, lints, then every test (unit + integration on real media).
test: setup lint
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## bench: criterion benches per stage and end to end (not part of `make test`).
bench: setup
	$(CARGO) bench --locked --bench face_path --bench reasoner --bench events --bench spot --bench train_step

## bench-live: the whole pipeline on a live 640x480 200 fps camera-like source for 10 minutes (a face
## on a test pattern), then 4 SynthME videos paced in real time for event latency (README "Performance").
## Not part of `make test`.
BENCH_OUT ?= out/bench-live
bench-live: setup
	$(CARGO) build --release --locked
	mkdir -p $(BENCH_OUT)
	$(REL_BIN) run "pipeline:face-test?image=$$($(REL_BIN) models path astronaut)&fps=200&width=640&height=480&frames=120000" \
		--sink jsonl:$(BENCH_OUT)/face-test-events.jsonl --summary $(BENCH_OUT)/face-test-summary.json
	[ -d $(BENCH_OUT)/latency-synth/videos ] || $(REL_BIN) synth $(BENCH_OUT)/latency-synth --preset bench --seed 1 --subjects 4 --clips 0 --long-videos 4
	scripts/latency.sh $(REL_BIN) $(BENCH_OUT)/latency-synth/videos/00[1-4]_1.avi

## bench-batch: batch throughput (video-seconds per wall-second) on 8 SynthME long videos (12 s of
## 640x480 200 fps MJPEG each), two at a time, reading every frame and then every other frame (the
## speed option `spot.flow_every=2`); bash's `time` prints each. Not part of `make test`.
bench-batch: setup
	$(CARGO) build --release --locked
	mkdir -p $(BENCH_OUT)
	[ -d $(BENCH_OUT)/batch-synth/videos ] || $(REL_BIN) synth $(BENCH_OUT)/batch-synth --preset bench --clips 0
	rm -rf $(BENCH_OUT)/batch $(BENCH_OUT)/batch-every2
	@echo "every frame (the default):"
	time $(REL_BIN) batch $(BENCH_OUT)/batch-synth/videos --out $(BENCH_OUT)/batch -j 2 --quiet
	@echo "every other frame (the speed option, README \"Spotting\"):"
	time $(REL_BIN) batch $(BENCH_OUT)/batch-synth/videos --out $(BENCH_OUT)/batch-every2 -j 2 --quiet --set spot.flow_every=2

## loso-default: LOSO evaluation of models/default's recipe on SynthME's general preset (stage 1, full
## model, MLP-head ablation; 30 clips per identity: ~40 core-minutes per fold, 19 folds (one per photo of
## its 36 people), one worker per core: ~6.5 h on 2 cores). Run it again to continue where it stopped;
## reports in $(LOSO_RUNS)/{stage1,full,mlp}/.
## Not part of `make test`.
LOSO_DATA ?= out/synth-general-30
LOSO_RUNS ?= out/loso-30
loso-default: setup
	$(CARGO) build --release --locked
	[ -f $(LOSO_DATA)/synth_truth.json ] || $(REL_BIN) synth $(LOSO_DATA) --preset general --clips 30 --long-videos 0
	[ -f out/pretrain/synth_truth.json ] || $(REL_BIN) synth out/pretrain --preset general --faces astronaut --seed 31 --subjects 36 --clips 12 --long-videos 0
	[ -f runs/pretrain/model/model.json ] || $(REL_BIN) --config models/default/train-stage1.toml train --dataset synth:out/pretrain --name pretrain --epochs 40 --set train.val_by=subject --set train.init_frontend= --out runs/pretrain
	models/default/loso.sh $(LOSO_DATA) $(LOSO_RUNS) $(REL_BIN) $$(nproc)

clean:
	$(CARGO) clean
	rm -rf out

## fuzz: every fuzz target (fuzz/fuzz_targets: AU strings, sheets, manifest, config, event JSON,
## the MJPEG region decoder, the container truncation check) for FUZZ_SECONDS each under cargo fuzz
## (nightly; cargo-fuzz is installed when missing). Seeds in fuzz/corpus/ stay as committed; new
## inputs go to fuzz/work/, findings to fuzz/artifacts/. Not part of `make test`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := au_string sheet manifest config event_json jpeg_region truncation
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@set -o pipefail; for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/work/$$t && \
		$(CARGO) +nightly fuzz run --fuzz-dir fuzz $$t fuzz/work/$$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=65536 2>&1 | tail -3 || exit 1; \
	done

## soak: `aullm serve` for SOAK_SECONDS (default 600) on a live-paced SynthME source that ends and
## comes back every 12 s, with jsonl, TCP, WebSocket and LSL readers and RSS sampled every 10 s
## (scripts/soak.sh; prints and writes out/soak/soak.json). Not part of `make test`.
SOAK_OUT ?= out/soak
soak: setup
	$(CARGO) build --release --locked
	scripts/soak.sh $(SOAK_OUT)
