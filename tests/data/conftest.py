import json

import pytest

ALPACA = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue.", "category": "easy"},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "category": "math"},
    {"instruction": "Translate to French.", "input": "cat", "output": "chat", "category": "lang", "score": 0.5},
]
SHAREGPT = [
    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}], "source": "a"},
    {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"},
                       {"from": "gpt", "value": "4"}, {"from": "human", "value": "and 3+3?"},
                       {"from": "gpt", "value": "6"}], "source": "b"},
]
MESSAGES = [
    {"id": "m1", "messages": [{"role": "user", "content": "Capital of France?"},
                              {"role": "assistant", "content": "Paris."}]},
    {"id": "m2", "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Sky colour?"},
                              {"role": "assistant", "content": "Blue."}], "lang": "en"},
]
PROMPT_COMPLETION = [{"prompt": "Q: 1+1?", "completion": "2"}, {"prompt": "Q: 2+2?", "completion": "4"}]
TEXT = [{"text": "Once upon a time."}, {"text": "The end."}]

FORMATS = {"alpaca": ALPACA, "sharegpt": SHAREGPT, "messages": MESSAGES,
           "prompt_completion": PROMPT_COMPLETION, "text": TEXT}


def write_jsonl(path, records, **dumps):
    path.write_text("".join(json.dumps(r, **dumps) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def alpaca_jsonl(tmp_path):
    return write_jsonl(tmp_path / "pool.jsonl", ALPACA)
