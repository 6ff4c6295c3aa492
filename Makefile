# The two commands of the README. Everything else is `darkroom --help`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test browser

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

# The web tests drive Debian's headless chromium (Playwright never downloads a browser here).
# A no-op when it is installed; otherwise apt-get installs it (root, as in CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Every test: unit tests, then integration tests against a real Kafka broker and S3 server that
# the test session starts (and stops) itself.
test: $(STAMP) browser
	$(VENV)/bin/pytest -q -p no:cacheprovider $(ARGS)
