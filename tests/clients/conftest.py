"""Real-client tests against a running `kiln serve` (started by scripts/client-tests).

KILN_URL: the server's base URL. The models are found by their file names in /api/tags.
"""
import json
import os
import urllib.request

import pytest

URL = os.environ.get("KILN_URL", "http://127.0.0.1:11434")


def _model_names():
    with urllib.request.urlopen(URL + "/api/tags") as r:
        return [m["name"] for m in json.load(r)["models"]]


def _find(fragment):
    names = _model_names()
    for n in names:
        if fragment in n.lower():
            return n
    raise AssertionError(f"no model matching {fragment!r} in {names}")


@pytest.fixture(scope="session")
def url():
    return URL


@pytest.fixture(scope="session")
def smollm():
    return _find("smollm2")


@pytest.fixture(scope="session")
def gemma():
    return _find("gemma")
