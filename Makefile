# The two commands of the README. Everything else is `darkroom --help`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test

# The Python environment, rebuilt when the dependencies change.
# The AsyncAPI validator (tests only) is the npm @asyncapi/parser, pinned by its lock file.
$(STAMP): pyproject.toml tools/asyncapi-validate/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	cd tools/asyncapi-validate && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

# The main job: local stack, workers, sample photos uploaded and processed, the gallery shown.
demo: $(STAMP)
	$(VENV)/bin/darkroom demo $(ARGS)

# Every test: unit tests, then integration tests against a real Kafka broker and S3 server that
# the test session starts (and stops) itself.
test: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider $(ARGS)
