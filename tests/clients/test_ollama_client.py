"""The official `ollama` Python package against kiln."""
import math

import ollama
import pytest

OPTS = {"temperature": 0, "seed": 7, "num_predict": 8}


@pytest.fixture(scope="module")
def client(url):
    return ollama.Client(host=url)


def test_list(client, smollm, gemma):
    names = [m.model for m in client.list().models]
    assert smollm in names and gemma in names
    m = next(m for m in client.list().models if m.model == smollm)
    assert m.size > 1_000_000
    assert m.details.format == "gguf"
    assert m.details.family == "llama"
    assert m.modified_at is not None


@pytest.mark.parametrize("fixture", ["smollm", "gemma"])
def test_generate(client, request, fixture):
    model = request.getfixturevalue(fixture)
    r = client.generate(model=model, prompt="Why is the sky blue?", options=OPTS)
    assert r.done and r.done_reason == "length"
    assert r.response
    assert r.eval_count == 8
    assert r.context and len(r.context) == r.prompt_eval_count + 8
    parts = list(client.generate(model=model, prompt="Why is the sky blue?", options=OPTS, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.response for p in parts) == r.response


@pytest.mark.parametrize("fixture", ["smollm", "gemma"])
def test_chat(client, request, fixture):
    model = request.getfixturevalue(fixture)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    r = client.chat(model=model, messages=messages, options=OPTS)
    assert r.message.role == "assistant" and r.message.content
    assert r.done
    parts = list(client.chat(model=model, messages=messages, options=OPTS, stream=True))
    assert parts[-1].done
    assert "".join(p.message.content for p in parts) == r.message.content


def test_embeddings_and_embed(client, smollm):
    e = client.embeddings(model=smollm, prompt="The sky is blue.").embedding
    assert len(e) >= 64
    assert abs(math.sqrt(sum(x * x for x in e)) - 1.0) > 1e-3  # legacy: not normalized
    r = client.embed(model=smollm, input=["The sky is blue.", "Grass is green."])
    assert len(r.embeddings) == 2
    for v in r.embeddings:
        assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-4


def test_unknown_model_is_404(client):
    for call in (
        lambda: client.generate(model="no-such-model", prompt="hi"),
        lambda: client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}]),
        lambda: client.embed(model="no-such-model", input="hi"),
    ):
        with pytest.raises(ollama.ResponseError) as e:
            call()
        assert e.value.status_code == 404
        assert "not found" in e.value.error
