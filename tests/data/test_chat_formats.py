"""Real-world chat records: OpenAI content parts, tool calls and tool turns,
reasoning fields, assistant-first and system-only conversations."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from thresher.data.readers import read_dataset
from thresher.data.writers import write_subset
from thresher.errors import InputError
from thresher.report.profile import profile_dataset

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}
PARTS = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is in"},
                                                   {"type": "text", "text": "this picture?"}, IMAGE]},
                      {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}]}
MIXED = {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": [{"type": "text", "text": "Describe"}, IMAGE]},
                      {"role": "assistant", "content": "A cat on a mat."}]}
TOOLS = {"messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21C"},
    {"role": "assistant", "content": "Sunny and 21C.", "reasoning_content": "The tool said sunny."}]}
ENDS_IN_CALL = {"messages": [
    {"role": "user", "content": "Book it"},
    {"role": "assistant", "content": "Booking now.", "tool_calls": None},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c2", "type": "function", "function": {"name": "book", "arguments": "{}"}}]}]}
ASSISTANT_FIRST = {"messages": [{"role": "assistant", "content": "Hi! How can I help?"},
                                {"role": "user", "content": "A joke, please."},
                                {"role": "assistant", "content": "Knock knock.", "thinking": "keep it short"}]}
SYSTEM_ONLY = {"messages": [{"role": "system", "content": "You are helpful."}]}


def _jsonl(tmp_path, rows, name="chat.jsonl", **dumps):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, **dumps) + "\n" for r in rows))
    return path


def _texts(ds):
    return list(zip(ds.column("prompt").to_pylist(), ds.column("response").to_pylist()))


def test_content_parts_are_joined_for_text(tmp_path):
    ds = read_dataset(_jsonl(tmp_path, [PARTS])).dataset
    assert _texts(ds) == [("What is in\nthis picture?", "A cat.")]


def test_mixed_string_and_part_contents_read_and_write_back_unchanged(tmp_path):
    path = _jsonl(tmp_path, [PARTS, MIXED, TOOLS], separators=(",", ":"))
    ds = read_dataset(path).dataset
    assert _texts(ds) == [("What is in\nthis picture?", "A cat."),
                          ("Be brief.\n\nDescribe", "A cat on a mat."),
                          ("Weather in Paris?\n\nsunny, 21C", "Sunny and 21C.")]
    out = tmp_path / "out.jsonl"
    write_subset(ds, out)
    assert out.read_bytes() == path.read_bytes()  # original bytes, compact separators and all


def test_tool_calls_and_tool_turns_are_kept_but_never_the_response(tmp_path):
    ds = read_dataset(_jsonl(tmp_path, [TOOLS, ENDS_IN_CALL])).dataset
    assert _texts(ds) == [("Weather in Paris?\n\nsunny, 21C", "Sunny and 21C."),
                          ("Book it", "Booking now.")]
    turns = ds.table.column("messages").to_pylist()[0]
    assert turns[1]["tool_calls"][0]["function"]["name"] == "weather"
    assert turns[3]["reasoning_content"] == "The tool said sunny."
    roles = [m["role"] for m in ds.column("messages").to_pylist()[0]]
    assert roles == ["user", "assistant", "tool", "assistant"]


def test_assistant_first_conversation_keeps_the_greeting_in_the_prompt(tmp_path):
    ds = read_dataset(_jsonl(tmp_path, [ASSISTANT_FIRST])).dataset
    assert _texts(ds) == [("Hi! How can I help?\n\nA joke, please.", "Knock knock.")]


def test_system_only_conversation_is_an_error_or_skipped(tmp_path):
    path = _jsonl(tmp_path, [PARTS, SYSTEM_ONLY])
    with pytest.raises(InputError, match=r"chat.jsonl:2: field 'messages' has no user or assistant turn"):
        read_dataset(path)
    result = read_dataset(path, on_error="skip")
    assert len(result.dataset) == 1 and result.rejects[0].location == "line 2"


@pytest.mark.parametrize("bad, message", [
    ({"role": "user", "content": None}, "field 'messages[0].content' is missing or null"),
    ({"role": "user", "content": 5}, "field 'messages[0].content' is a number, expected a string or a list"),
    ({"role": "user", "content": [{"type": "text"}]}, "field 'messages[0].content[0].text' is missing"),
    ({"role": "robot", "content": "x"}, "has unknown role 'robot'"),
])
def test_malformed_chat_turns_name_the_field(tmp_path, bad, message):
    answer = {"role": "assistant", "content": 6 if bad["content"] == 5 else "ok"}  # one content type per file
    row = {"messages": [bad, answer]}
    with pytest.raises(InputError, match=":1: ") as info:
        read_dataset(_jsonl(tmp_path, [row]))
    assert message in str(info.value)


def test_parts_survive_a_parquet_round_trip(tmp_path):
    ds = read_dataset(_jsonl(tmp_path, [PARTS, MIXED, TOOLS])).dataset
    out = tmp_path / "chat.parquet"
    write_subset(ds, out)
    again = read_dataset(out).dataset
    assert _texts(again) == _texts(ds)
    first = pq.read_table(out).column("messages").to_pylist()[0][0]["content"]
    assert first[2]["image_url"]["url"] == IMAGE["image_url"]["url"]


def test_derived_ids_work_for_parts_and_tool_calls(tmp_path):
    ds = read_dataset(_jsonl(tmp_path, [PARTS, MIXED, TOOLS, ENDS_IN_CALL])).dataset
    ids = ds.ids.tolist()
    assert len(set(ids)) == 4 and all(len(i) == 16 for i in ids)


def test_inspect_counts_chat_features(tmp_path):
    ds = read_dataset(_jsonl(tmp_path, [PARTS, MIXED, TOOLS, ENDS_IN_CALL, ASSISTANT_FIRST])).dataset
    chat = profile_dataset(ds)["chat"]
    assert chat["rows_with_tool_calls"] == 2 and chat["rows_with_tool_turns"] == 1
    assert chat["rows_with_reasoning"] == 2 and chat["rows_with_non_text_parts"] == 2
    assert chat["turns_by_role"]["tool"] == 1 and chat["turns_by_role"]["assistant"] == 8


def test_sharegpt_is_unchanged(tmp_path):
    row = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"},
                             {"from": "gpt", "value": "A"}]}
    assert _texts(read_dataset(_jsonl(tmp_path, [row])).dataset) == [("S\n\nQ", "A")]
    with pytest.raises(InputError, match="has no human or gpt turn"):
        read_dataset(_jsonl(tmp_path, [{"conversations": [{"from": "system", "value": "S"}]}], name="s.jsonl"))
