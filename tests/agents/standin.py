#!/usr/bin/env python3
"""Stand-ins for the model APIs coding agents call, for tests/agents/run.sh. Loopback only.

One process, one port, four dialects (each agent points its base URL here):

  POST /v1/messages[?beta=true]     Anthropic Messages (Claude Code), SSE or JSON
  POST /v1/messages/count_tokens    Anthropic token count
  POST /v1/responses                OpenAI Responses (Codex CLI), SSE or JSON
  POST /v1/chat/completions         OpenAI Chat Completions (aider through litellm), SSE or JSON
  POST /v1beta/models/M:generateContent | :streamGenerateContent | :countTokens
                                    Gemini API (Gemini CLI)

Claude Code and Codex get a scripted conversation. The main request (the one whose user
messages carry "--marker<task id>" and whose tools include Claude Code's Bash or Codex's
exec_command) is answered with a call of that tool running --command, once per task id; the
request that carries the call's result gets a final text, and the result is written to
DIR/<task id>.txt (--tool-results DIR): the test reads it to see what the agent's own tool
call could and could not read. Every other request (titles, summaries, quota probes, routing
and JSON-mode side requests) gets a short answer that fits the JSON schema it asks for, if
any, so the main flow goes on. aider's chat answer is a "whole file" edit that creates
--aider-file holding "made-by-aider".

Every request is appended to --log as one JSON line (method, path, selected headers, body):
that is how the test learns what each agent sends. The port is written to --port-file once the
socket listens. Standard library only.
"""

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOL_USE_ID = "toolu_agentbox_standin_01"
CALL_ID = "call_agentbox_standin_01"
FINAL_TEXT = "AGENTBOX-STANDIN-FINAL: the command ran."
SIDE_TEXT = "AGENTBOX-STANDIN-FINAL"
LOGGED_HEADERS = ("user-agent", "anthropic-version", "anthropic-beta", "x-app", "content-type",
                  "accept", "host", "originator", "x-goog-api-client", "openai-beta")
CREDENTIAL_HEADERS = ("x-api-key", "authorization", "x-goog-api-key", "api-key")
USAGE_ANTHROPIC = {"input_tokens": 12, "output_tokens": 8,
                   "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.tool_calls_sent = set()
        self.seq = 0
        self.port = None

    def task(self, texts):
        """The task id in the first user text that carries the marker ("MARKER<id> ...")."""
        for text in texts:
            at = text.find(self.args.marker)
            if at >= 0:
                m = re.match(r"[A-Za-z0-9_-]+", text[at + len(self.args.marker):])
                return m.group(0) if m else "task"
        return None

    def command_for(self, task):
        """--task-command ID=CMD for this task (@PORT@ in it is this server's port), else
        --command."""
        for spec in self.args.task_command:
            tid, _, cmd = spec.partition("=")
            if tid == task:
                return cmd.replace("@PORT@", str(self.port))
        return self.args.command

    def save_result(self, task, text):
        with open(os.path.join(self.args.tool_results, task + ".txt"), "w") as f:
            f.write(text)

    def claim(self, task):
        """True once per task: its first main request gets the tool call."""
        with self.lock:
            first = task not in self.tool_calls_sent
            self.tool_calls_sent.add(task)
            return first

    def next_id(self, prefix):
        with self.lock:
            self.seq += 1
            return "%s_standin_%04d" % (prefix, self.seq)


def example(schema):
    """A small value that fits a JSON schema (enough for the schemas agents ask for)."""
    if not isinstance(schema, dict):
        return "agentbox"
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    kind = (kind or ("object" if "properties" in schema else "string")).lower()
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: example(v) for k, v in props.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)  # 1 fits "a score from 1-100" described only in words
    if kind == "boolean":
        return False
    return "agentbox stand-in"


def side_text(schema):
    return json.dumps(example(schema)) if schema else SIDE_TEXT


def block_text(content):
    """The text of a message's content (a string, or a list of blocks)."""
    if isinstance(content, str):
        return content
    out = []
    for b in content or []:
        if isinstance(b, dict) and b.get("type") == "text":
            out.append(b.get("text", ""))
        elif isinstance(b, dict) and b.get("type") == "tool_result":
            out.append(block_text(b.get("content")))
    return "\n".join(out)


def sse(events, named=True):
    if named:
        return "".join("event: %s\ndata: %s\n\n" % (e["type"], json.dumps(e)) for e in events)
    return "".join("data: %s\n\n" % (e if isinstance(e, str) else json.dumps(e))
                   for e in events)


# --- Anthropic Messages (Claude Code) ---

def find_tool_result(messages):
    """Our tool_use's result, if the last user message carries it."""
    for m in reversed(messages or []):
        if m.get("role") != "user":
            continue
        for b in m.get("content") if isinstance(m.get("content"), list) else []:
            if isinstance(b, dict) and b.get("type") == "tool_result" \
                    and b.get("tool_use_id") == TOOL_USE_ID:
                return b
        return None
    return None


def anthropic_reply(state, body, blocks, stop_reason):
    model = body.get("model", "claude-standin")
    msg_id = state.next_id("msg")
    if not body.get("stream"):
        msg = {"id": msg_id, "type": "message", "role": "assistant", "model": model,
               "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
               "usage": USAGE_ANTHROPIC}
        return "application/json", json.dumps(msg)
    events = [{"type": "message_start",
               "message": {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                           "content": [], "stop_reason": None, "stop_sequence": None,
                           "usage": dict(USAGE_ANTHROPIC, output_tokens=1)}}]
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            start, delta = dict(b, text=""), {"type": "text_delta", "text": b["text"]}
        else:
            start = dict(b, input={})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(b["input"])}
        events.append({"type": "content_block_start", "index": i, "content_block": start})
        events.append({"type": "content_block_delta", "index": i, "delta": delta})
        events.append({"type": "content_block_stop", "index": i})
    events.append({"type": "message_delta",
                   "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                   "usage": {"output_tokens": 8}})
    events.append({"type": "message_stop"})
    return "text/event-stream", sse(events)


def anthropic_messages(state, body):
    messages = body.get("messages") or []
    task = state.task(block_text(m.get("content")) for m in messages if m.get("role") == "user")
    result = find_tool_result(messages)
    if result is not None and task:
        state.save_result(task, block_text(result.get("content")))
        return "final", anthropic_reply(state, body, [{"type": "text", "text": FINAL_TEXT}],
                                        "end_turn")
    tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    if "Bash" in tools and task and state.claim(task):
        block = {"type": "tool_use", "id": TOOL_USE_ID, "name": "Bash",
                 "input": {"command": state.command_for(task),
                           "description": "Run the command the test harness asks for"}}
        return "tool_use", anthropic_reply(state, body, [block], "tool_use")
    fmt = (body.get("output_config") or {}).get("format") or {}
    text = side_text(fmt.get("schema") if fmt.get("type") == "json_schema" else None)
    return "side", anthropic_reply(state, body, [{"type": "text", "text": text}], "end_turn")


# --- OpenAI Responses (Codex CLI) ---

def openai_responses(state, body):
    items = body.get("input") if isinstance(body.get("input"), list) else []
    output = next((i.get("output") for i in items if isinstance(i, dict)
                   and i.get("type") == "function_call_output" and i.get("call_id") == CALL_ID),
                  None)
    task = state.task(json.dumps(i.get("content")) for i in items
                      if isinstance(i, dict) and i.get("role") == "user")
    tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    resp_id, item_id = state.next_id("resp"), state.next_id("item")
    if output is not None and task:
        state.save_result(task, output if isinstance(output, str) else json.dumps(output))
        kind, item = "final", None
    elif "exec_command" in tools and task and state.claim(task):
        kind = "tool_use"
        item = {"type": "function_call", "id": item_id, "status": "completed",
                "call_id": CALL_ID, "name": "exec_command",
                "arguments": json.dumps({"cmd": state.command_for(task)})}
    else:
        kind, item = "side", None
    if item is None:
        fmt = (body.get("text") or {}).get("format") or {}
        text = FINAL_TEXT if kind == "final" else \
            side_text(fmt.get("schema") if fmt.get("type") == "json_schema" else None)
        item = {"type": "message", "id": item_id, "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
    usage = {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 8, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 20}
    response = {"id": resp_id, "object": "response", "status": "completed",
                "model": body.get("model", "standin"), "output": [item], "usage": usage}
    if not body.get("stream"):
        return kind, ("application/json", json.dumps(response))
    events = [{"type": "response.created",
               "response": dict(response, status="in_progress", output=[])},
              {"type": "response.output_item.added", "output_index": 0, "item": item},
              {"type": "response.output_item.done", "output_index": 0, "item": item},
              {"type": "response.completed", "response": response}]
    return kind, ("text/event-stream", sse(events))


# --- OpenAI Chat Completions (aider) ---

def openai_chat(state, body):
    text = "%s\n```\nmade-by-aider\n```\n" % state.args.aider_file
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_schema", "json_object"):
        text = side_text((fmt.get("json_schema") or {}).get("schema") or {"type": "object"})
    cid, model, now = state.next_id("chatcmpl"), body.get("model", "standin"), int(time.time())
    usage = {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
    if not body.get("stream"):
        return "text", ("application/json", json.dumps(
            {"id": cid, "object": "chat.completion", "created": now, "model": model,
             "choices": [{"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": text}}],
             "usage": usage}))
    chunk = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": model}
    events = [dict(chunk, choices=[{"index": 0, "finish_reason": None,
                                    "delta": {"role": "assistant", "content": text}}]),
              dict(chunk, choices=[{"index": 0, "finish_reason": "stop", "delta": {}}],
                   usage=usage),
              "[DONE]"]
    return "text", ("text/event-stream", sse(events, named=False))


# --- Gemini API (Gemini CLI) ---

def gemini(state, body, method, stream):
    if method == "countTokens":
        return "count_tokens", ("application/json", json.dumps({"totalTokens": 100}))
    cfg = (body.get("generationConfig") or {}) if isinstance(body, dict) else {}
    schema = cfg.get("responseJsonSchema") or cfg.get("responseSchema")
    if cfg.get("responseMimeType") == "application/json" and not schema:
        schema = {"type": "object"}
    reply = {"candidates": [{"content": {"role": "model", "parts": [{"text": side_text(schema)}]},
                             "finishReason": "STOP", "index": 0}],
             "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 8,
                               "totalTokenCount": 20},
             "modelVersion": "gemini-standin"}
    if stream:
        return "text", ("text/event-stream", sse([reply], named=False))
    return "text", ("application/json", json.dumps(reply))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agentbox-standin/1"

    def log_message(self, fmt, *args):  # the JSON log replaces the default stderr lines
        pass

    def record(self, body, kind):
        entry = {"t": round(time.time(), 3), "method": self.command, "path": self.path,
                 "kind": kind,
                 "headers": {k: self.headers.get(k) for k in LOGGED_HEADERS
                             if self.headers.get(k) is not None},
                 "body": body,
                 # Every value of every header that can carry a key (for the credential
                 # broker's checks); the log stays in the test's private directory.
                 "credentials": {k: self.headers.get_all(k) for k in CREDENTIAL_HEADERS
                                 if self.headers.get_all(k)}}
        with self.server.state.lock, open(self.server.state.args.log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def read_body(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def send(self, status, ctype, data):
        data = data.encode() if isinstance(data, str) else data
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_standin")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def route(self, body):
        state, path = self.server.state, self.path.split("?", 1)[0]
        if self.command != "POST" or not isinstance(body, dict):
            return "other", ("application/json", "{}")
        if path == "/v1/messages":
            return anthropic_messages(state, body)
        if path == "/v1/messages/count_tokens":
            return "count_tokens", ("application/json", '{"input_tokens": 100}')
        if path == "/v1/responses":
            return openai_responses(state, body)
        if path == "/v1/chat/completions":
            return openai_chat(state, body)
        if path.startswith("/v1beta/models/") and ":" in path:
            method = path.rsplit(":", 1)[1]
            return gemini(state, body, method.replace("stream", "").replace(
                "GenerateContent", "generateContent"), method.startswith("stream"))
        return "other", ("application/json", "{}")

    def handle_any(self):
        body = self.read_body() if self.command in ("POST", "PUT") else None
        try:
            kind, (ctype, data) = self.route(body)
        except Exception as e:  # a stand-in bug must show in the log, not hang the agent
            kind, ctype, data = "error: %r" % e, "application/json", '{"error": "standin"}'
            self.record(body, kind)
            self.send(500, ctype, data)
            return
        self.record(body, kind)
        self.send(200, ctype, data)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any


def summary(log):
    """One line per logged request: what an agent sent, for the test's output."""
    for line in open(log):
        e = json.loads(line)
        b = e["body"] if isinstance(e["body"], dict) else {}
        tools = [t.get("name") or (t.get("function") or {}).get("name") or t.get("type")
                 for t in b.get("tools") or [] if isinstance(t, dict)]
        print("  %-4s %-58s %-12s model=%s stream=%s tools=%d%s" % (
            e["method"], e["path"][:58], e["kind"], b.get("model", "-"), b.get("stream", "-"),
            len(tools), " (Bash)" if "Bash" in tools else ""))


def watch_parent(parent):
    """A killed test must not leave a server behind: exit once the parent is gone."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summary", metavar="LOG", help="print a summary of LOG and exit")
    p.add_argument("--port-file")
    p.add_argument("--log")
    p.add_argument("--tool-results", metavar="DIR",
                   help="where AGENT.txt gets the output of the scripted tool call")
    p.add_argument("--command", help="what the scripted tool call runs")
    p.add_argument("--marker", help="text that marks the main task")
    p.add_argument("--task-command", action="append", default=[], metavar="ID=CMD",
                   help="what the scripted tool call runs for task ID (else --command)")
    p.add_argument("--aider-file", default="made_by_aider.txt")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="exit when the process that started this one is gone")
    args = p.parse_args()
    if args.summary:
        summary(args.summary)
        return 0
    for need in ("port_file", "log", "tool_results", "command", "marker"):
        if getattr(args, need) is None:
            p.error("--%s is required" % need.replace("_", "-"))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.state = State(args)
    srv.state.port = srv.server_address[1]
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(args.port_file + ".tmp", args.port_file)
    if args.exit_with_parent:
        threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
