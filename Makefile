# The two commands of the README. Everything else is `darkroom --help`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test

# The Python environment, rebuilt when the dependencies change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: local stack, workers, sample photos uploaded and processed, the gallery shown.
demo: $(STAMP)
	$(VENV)/bin/darkroom demo $(ARGS)

# Every test: unit tests, then integration tests against a real Kafka broker and S3 server that
# the test session starts (and stops) itself.
test: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider $(ARGS)
