# The two commands (see README): `make demo` and `make test`. Both set up .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.deps-installed

.PHONY: demo test build lint typecheck simd-audit rust-test py-test bench clean wheel wheel-check

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# one list of dependencies: pyproject.toml (build requirements and the extras)
	$(PY) tools/extras.py build test demo distributed > $(VENV)/requirements.txt
	$(PIP) install --quiet -r $(VENV)/requirements.txt
	touch $(STAMP)

build: $(STAMP)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release --quiet --features test-hooks

demo: build
	$(PY) -m ferroptim demo

rust-test:
	# a fixed proptest seed keeps `make test` reproducible; PROPTEST_RNG_SEED=<n> explores others
	PROPTEST_RNG_SEED=$${PROPTEST_RNG_SEED:-20261127} cargo test --workspace --exclude ferroptim-python --quiet
	cargo run --release --quiet -p ferroptim-core --example train_mlp

lint: $(STAMP)
	cargo fmt --all --check
	PYO3_PYTHON=$(abspath $(PY)) cargo clippy --workspace --all-targets --quiet -- -D warnings
	# the core crate's API docs build without warnings (no broken or private intra-doc links)
	RUSTDOCFLAGS="-D warnings" cargo doc -p ferroptim-core --no-deps --quiet
	$(VENV)/bin/ruff check python tests benches tools
	$(VENV)/bin/ruff format --check python tests benches tools

py-test: build
	# FERROPTIM_REQUIRE_MPI: the MPI tests fail instead of skipping when mpi4py is missing
	FERROPTIM_REQUIRE_MPI=1 $(PY) -m pytest

# mypy over the package and over a user's script of the public API (both must be clean), and
# mypy's stubtest: the native module's stubs (python/ferroptim/_native.pyi) against the built
# module (tools/stubtest-allowlist.txt names what stubtest cannot see, with the reason)
typecheck: build
	$(VENV)/bin/mypy -p ferroptim
	$(VENV)/bin/mypy --strict tests/typing/user_script.py examples/torch_port/train_ferroptim.py
	$(PY) -m mypy.stubtest ferroptim._native --allowlist tools/stubtest-allowlist.txt

# manylinux (glibc 2.28) abi3 wheel with a stripped extension, and the sdist, into dist/;
# zig (the `wheel` extra) links against glibc 2.28 whatever the host's glibc
wheel: $(STAMP)
	$(PY) tools/extras.py wheel > $(VENV)/wheel-requirements.txt
	$(PIP) install --quiet -r $(VENV)/wheel-requirements.txt
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin build --release --strip --zig --compatibility manylinux_2_28 --out dist
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin sdist --out dist

# the wheel in a fresh venv with only numpy: auditwheel's verdict, then a short training there
wheel-check: wheel
	$(PY) tools/wheel_check.py dist

# every kernel trampoline of the built extension holds registers of its level's width (a kernel
# that compiled to scalar code at AVX-512 or AVX2 fails here; tools/simd_audit.py says which)
simd-audit: build
	$(PY) tools/simd_audit.py

test: build lint typecheck simd-audit rust-test py-test

bench: build
	$(PY) -m pytest benches --benchmark-enable --benchmark-only -p no:cacheprovider

clean:
	rm -rf target $(VENV)
