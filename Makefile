# The two commands of the README. Each creates .venv and installs ZooQL when missing.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.zooql-installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	@# the ray extra (Ray Core) too, so that the Ray executor's tests (tests/test_ray.py) run in CI
	$(VENV)/bin/pip install --quiet -e '.[test,ray]' || { echo "note: the ray extra could not be installed; tests/test_ray.py will skip"; $(VENV)/bin/pip install --quiet -e '.[test]'; }
	@# WordNet for CREATE SEMANTIC GRAPH (MLL): Debian's wordnet-base, optional (tests that need it skip)
	@test -d /usr/share/wordnet || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wordnet-base >/dev/null 2>&1; } || \
	  echo "note: WordNet (Debian package wordnet-base) is not installed; tests that need it will skip"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/zooql demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV)
