"""The official `openai` Python package against kiln's /v1 routes."""
import math

import openai
import pytest


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="kiln")


def test_models_list(client, smollm, gemma):
    ids = [m.id for m in client.models.list()]
    assert smollm in ids and gemma in ids


@pytest.mark.parametrize("fixture", ["smollm", "gemma"])
def test_chat_completions(client, request, fixture):
    model = request.getfixturevalue(fixture)
    msgs = [{"role": "user", "content": "Say hello."}]
    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=6, temperature=0, seed=3)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 0
    stream = client.chat.completions.create(model=model, messages=msgs, max_tokens=6, temperature=0, seed=3,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_embeddings(client, smollm):
    r = client.embeddings.create(model=smollm, input=["The sky is blue.", "Grass is green."])
    assert len(r.data) == 2 and r.data[1].index == 1
    v = r.data[0].embedding
    assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-4
    f = client.embeddings.create(model=smollm, input="The sky is blue.", encoding_format="float")
    assert max(abs(a - b) for a, b in zip(f.data[0].embedding, v)) < 1e-5


def test_unknown_model(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
