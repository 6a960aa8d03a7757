"""OpenAI's Python SDK (from PyPI) against inferpush's /v1/embeddings: the SDK's default
request, both encodings decoding to the same vectors, a batch of 100 inputs, usage, the
vectors against the sentence-transformers reference, and the SDK's usual exceptions.
Exits non-zero on the first failed check. Started by integration-tests/tests/openai.rs.

Environment: INFERPUSH_API_URL, INFERPUSH_API_KEY, REFERENCE_JSON.
"""

import json
import math
import os
import sys

import openai

MODEL = "all-minilm-l6-v2"


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", flush=True)
        sys.exit(1)
    print(f"ok: {message}", flush=True)


def main():
    base_url = os.environ["INFERPUSH_API_URL"] + "/v1"
    client = openai.OpenAI(base_url=base_url, api_key=os.environ["INFERPUSH_API_KEY"], max_retries=0)
    reference = json.load(open(os.environ["REFERENCE_JSON"]))
    sentences, expected = reference["sentences"], reference["embeddings"]

    # The SDK's own default request (it asks for base64 and decodes it).
    answer = client.embeddings.create(model=MODEL, input=sentences[0])
    check(answer.object == "list" and len(answer.data) == 1, "one input, one vector")
    check(len(answer.data[0].embedding) == 384, "384 dimensions")
    similarity = cosine(answer.data[0].embedding, expected[0])
    check(similarity >= 0.999, f"matches sentence-transformers (cosine {similarity:.6f})")
    check(answer.usage.prompt_tokens > 2 and answer.usage.total_tokens == answer.usage.prompt_tokens,
          f"usage counted ({answer.usage.prompt_tokens} tokens)")

    # 100 inputs, in both encodings.
    inputs = [sentences[i % len(sentences)] + f" ({i})" for i in range(100)]
    floats = client.embeddings.create(model=MODEL, input=inputs, encoding_format="float")
    packed = client.embeddings.create(model=MODEL, input=inputs, encoding_format="base64")
    check(len(floats.data) == 100 and [d.index for d in floats.data] == list(range(100)),
          "100 inputs answered in order")
    check(isinstance(packed.data[0].embedding, str), "base64 is returned as a string")
    import base64
    import struct
    decoded = [list(struct.unpack(f"<{384}f", base64.b64decode(d.embedding))) for d in packed.data]
    worst = max(abs(a - b) for f, d in zip(floats.data, decoded) for a, b in zip(f.embedding, d))
    check(worst < 1e-6, f"base64 decodes to the float vectors (largest difference {worst:g})")
    check(floats.usage.prompt_tokens == packed.usage.prompt_tokens > 100, "usage is the same either way")
    by_alias = client.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=sentences[1])
    check(cosine(by_alias.data[0].embedding, expected[1]) >= 0.999, "the Hugging Face id is an alias")

    # Errors raise the SDK's usual exceptions.
    try:
        client.embeddings.create(model="text-embedding-3-small", input="x")
        check(False, "an unknown model is refused")
    except openai.NotFoundError as error:
        check(error.code == "model_not_found", f"unknown model: NotFoundError ({error.code})")
    try:
        client.embeddings.create(model=MODEL, input=[[101, 2023, 102]])
        check(False, "token ids are refused")
    except openai.UnprocessableEntityError as error:
        check("token ids" in error.message, "token ids: UnprocessableEntityError")
    try:
        client.embeddings.create(model=MODEL, input=["fine", ""])
        check(False, "an empty input is refused")
    except openai.BadRequestError as error:
        check(error.param == "input", "empty input: BadRequestError naming `input`")
    wrong_key = openai.OpenAI(base_url=base_url, api_key="not-a-key", max_retries=0)
    try:
        wrong_key.embeddings.create(model=MODEL, input="x")
        check(False, "an unknown key is refused")
    except openai.AuthenticationError:
        check(True, "unknown key: AuthenticationError")
    print("all passed", flush=True)


if __name__ == "__main__":
    main()
