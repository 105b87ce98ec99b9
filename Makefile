# foryou: the two commands a newcomer needs are `make run` and `make test`.
BUILD_DIR ?= build/release
JOBS ?= 2
LISTEN ?= 127.0.0.1:8080
DATA_DIR ?= ./data
# Extra arguments for the first configure of BUILD_DIR. CI passes a unity
# build (.ci/run): half the compile time of a clean build (185 s against
# 338 s for `cmake --build` -j2 of a fresh tree, one run each, same hour), at the cost of slower incremental builds.
CMAKE_ARGS ?=

.PHONY: deps build run test install sanitize tsan fuzz crash-campaign clean

deps:
	@bash scripts/install-deps.sh

$(BUILD_DIR)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/foryou serve --data-dir $(DATA_DIR) --listen $(LISTEN) --demo

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j 1

# The binary, config/foryou.toml (an existing one is kept), the systemd unit,
# the Grafana dashboard, docs and examples under PREFIX; DESTDIR for packaging
# (README.md, "Install"; packaging/check.sh tests it).
PREFIX ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD_DIR) --prefix $(PREFIX)

# ASan+UBSan build (clang-14) of the server and every test, run through ctest.
sanitize: deps
	bash scripts/sanitize.sh

tsan: deps
	bash scripts/tsan.sh

# Each libFuzzer harness of fuzz/ for FUZZ_SECONDS (default 30).
FUZZ_SECONDS ?= 30
fuzz: deps
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

# kill -9 under concurrent writes: TRIALS per mode (open, policy, backup).
TRIALS ?= 20
crash-campaign: build
	bash scripts/crash-campaign.sh $(TRIALS)

clean:
	rm -rf build
