#!/usr/bin/env bash
# Smoke test against a running LLM policy gateway (start it with `make run`).
#
# Prints one line per check, `PASS name` or `FAIL name: reason`, then
# `N passed, M failed`; exits 1 if any check failed, 2 on a usage error.
# Needs only bash, curl, grep, sed, awk and python3 (standard library).
set -u

usage() {
    cat <<'EOF'
Usage: scripts/test_gateway.sh [-h|--help] [BASE_URL]

Smoke-test a running gateway on its three APIs (Anthropic /v1/messages, OpenAI
/v1/chat/completions and OpenAI's Responses API /v1/responses), streaming and not,
plus bad input and bad keys.

  BASE_URL          gateway address (default: $GATEWAY_URL, else http://localhost:8000)

Environment:
  GATEWAY_URL       gateway address when BASE_URL is not given
  GATEWAY_API_KEY   gateway key (default: the dev key sk-luthien-dev-key)
  EXPECT_MOCK       1 (default): the upstream is the mock LLM, so "Count to 3"
                    must answer exactly "1, 2, 3"; 0: accept any non-empty text
  CLAUDE_MODEL      Claude model to ask (default: claude-sonnet-4-5, the bug
                    report's; it reached end of life on 2026-11-30, so give a
                    current one, e.g. claude-sonnet-5-5, against the real API)
  OPENAI_MODEL      OpenAI model to ask (default: gpt-4o-mini)
  CHECK_RESPONSES   1 (default): also check OpenAI's Responses API
                    (/v1/responses), streaming and not, bad input and bad keys;
                    0: skip it

Prints `PASS name` or `FAIL name: reason` per check, then `N passed, M failed`.
Exit status: 0 if every check passed, 1 if any failed, 2 on a usage error.
EOF
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
    -*)
        echo "unknown option: $1" >&2
        usage >&2
        exit 2
        ;;
esac
if [ "$#" -gt 1 ]; then
    echo "too many arguments" >&2
    usage >&2
    exit 2
fi

BASE_URL="${1:-${GATEWAY_URL:-http://localhost:8000}}"
BASE_URL="${BASE_URL%/}"
API_KEY="${GATEWAY_API_KEY:-sk-luthien-dev-key}"
EXPECT_MOCK="${EXPECT_MOCK:-1}"
CHECK_RESPONSES="${CHECK_RESPONSES:-1}"
case "$CHECK_RESPONSES" in
    0 | 1) ;;
    *)
        echo "CHECK_RESPONSES must be 0 or 1" >&2
        exit 2
        ;;
esac
BAD_KEY="sk-smoke-test-not-a-valid-key"
MAX_TIME=30

for tool in curl python3 grep sed awk; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "required tool not found: $tool" >&2
        exit 2
    fi
done

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/test_gateway.XXXXXX")" || exit 2
trap 'rm -rf "$WORK_DIR"' EXIT
chmod 700 "$WORK_DIR"

# Keys go to curl through header files, so they never show up in `ps` output.
umask 077
printf 'x-api-key: %s\n' "$API_KEY" >"$WORK_DIR/anthropic_key"
printf 'Authorization: Bearer %s\n' "$API_KEY" >"$WORK_DIR/openai_key"
printf 'x-api-key: %s\n' "$BAD_KEY" >"$WORK_DIR/anthropic_bad_key"
printf 'Authorization: Bearer %s\n' "$BAD_KEY" >"$WORK_DIR/openai_bad_key"

BODY="$WORK_DIR/body"
PASSED=0
FAILED=0
STATUS=""
ERROR=""

pass() {
    echo "PASS $1"
    PASSED=$((PASSED + 1))
}

fail() {
    local reason="$2"
    # Never echo a key, even if a server reflects it back in an error message.
    reason="${reason//"$API_KEY"/<key>}"
    reason="${reason//"$BAD_KEY"/<key>}"
    echo "FAIL $1: $reason"
    FAILED=$((FAILED + 1))
}

curl_reason() {
    case "$1" in
        6) echo "cannot resolve host" ;;
        7) echo "cannot connect to $BASE_URL" ;;
        28) echo "timed out after ${MAX_TIME}s" ;;
        52) echo "empty reply from server" ;;
        56) echo "connection reset while receiving" ;;
        *) echo "curl error $1" ;;
    esac
}

# request PATH KEY_HEADER_FILE JSON_BODY: response body to $BODY, status to
# $STATUS; returns non-zero with $ERROR set when no HTTP response came back.
request() {
    local rc
    : >"$BODY"
    STATUS="$(curl -sS --max-time "$MAX_TIME" --connect-timeout 10 \
        -o "$BODY" -w '%{http_code}' \
        -H "@$2" \
        -H 'content-type: application/json' \
        -H 'anthropic-version: 2023-06-01' \
        --data-binary "$3" \
        "$BASE_URL$1" 2>/dev/null)"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        ERROR="$(curl_reason "$rc")"
        return 1
    fi
    return 0
}

# A short, key-free description of an unexpected status: the status and, when
# the body is an error in either API's format, its error type.
status_reason() {
    local etype
    etype="$(python3 -c '
import json, sys
try:
    err = json.load(sys.stdin)["error"]
    print(str(err.get("type") or err.get("code") or "")[:40])
except Exception:
    pass
' <"$BODY" 2>/dev/null)"
    if [ -n "$etype" ]; then
        echo "status $STATUS ($etype)"
    else
        echo "status $STATUS"
    fi
}

# check_text TEXT: empty output if TEXT is acceptable, else the reason.
check_text() {
    if [ -z "$1" ]; then
        echo "empty response text"
    elif [ "$EXPECT_MOCK" = "1" ] && [ "$1" != "1, 2, 3" ]; then
        echo "text is not \"1, 2, 3\" (set EXPECT_MOCK=0 for a real upstream)"
    fi
}

CLAUDE_MODEL="${CLAUDE_MODEL:-claude-sonnet-4-5}"
OPENAI_MODEL="${OPENAI_MODEL:-gpt-4o-mini}"
case "$CLAUDE_MODEL$OPENAI_MODEL" in
    *[!A-Za-z0-9._:-]*)
        echo "CLAUDE_MODEL and OPENAI_MODEL take model names only" >&2
        exit 2
        ;;
esac
A_BODY='{"model":"'"$CLAUDE_MODEL"'","max_tokens":50,"messages":[{"role":"user","content":"Count to 3"}]}'
A_STREAM_BODY='{"model":"'"$CLAUDE_MODEL"'","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"Count to 3"}]}'

check_anthropic_nonstream() {
    local name="anthropic_messages" text reason
    request /v1/messages "$WORK_DIR/anthropic_key" "$A_BODY" || {
        fail "$name" "$ERROR"
        return
    }
    [ "$STATUS" = "200" ] || {
        fail "$name" "$(status_reason)"
        return
    }
    text="$(python3 -c '
import json, sys
try:
    print(json.load(sys.stdin)["content"][0]["text"], end="")
except Exception:
    sys.exit(1)
' <"$BODY" 2>/dev/null)" || {
        fail "$name" "no content[0].text in response"
        return
    }
    reason="$(check_text "$text")"
    if [ -n "$reason" ]; then fail "$name" "$reason"; else pass "$name"; fi
}

check_anthropic_stream() {
    local name="anthropic_messages_stream" events first last starts deltas text reason
    request /v1/messages "$WORK_DIR/anthropic_key" "$A_STREAM_BODY" || {
        fail "$name" "$ERROR"
        return
    }
    [ "$STATUS" = "200" ] || {
        fail "$name" "$(status_reason)"
        return
    }
    events="$(tr -d '\r' <"$BODY" | grep '^event: ' | sed 's/^event: *//')"
    first="$(printf '%s\n' "$events" | awk 'NF { print; exit }')"
    last="$(printf '%s\n' "$events" | awk 'NF { e = $0 } END { print e }')"
    starts="$(printf '%s\n' "$events" | grep -cx 'message_start')"
    deltas="$(printf '%s\n' "$events" | grep -cx 'content_block_delta')"
    if [ -z "$events" ]; then
        fail "$name" "no SSE events in response"
    elif printf '%s\n' "$events" | grep -qx 'error'; then
        fail "$name" "stream contains an error event"
    elif [ "$starts" -ne 1 ]; then
        fail "$name" "$starts message_start events (want 1)"
    elif [ "$first" != "message_start" ]; then
        fail "$name" "first event is ${first:0:40}, not message_start"
    elif [ "$deltas" -lt 1 ]; then
        fail "$name" "no content_block_delta event"
    elif [ "$last" != "message_stop" ]; then
        fail "$name" "last event is ${last:0:40}, not message_stop"
    else
        text="$(tr -d '\r' <"$BODY" | python3 -c '
import json, sys
out = []
for line in sys.stdin:
    if line.startswith("data:"):
        try:
            delta = json.loads(line[5:]).get("delta") or {}
        except ValueError:
            continue
        if delta.get("type") == "text_delta":
            out.append(delta.get("text", ""))
print("".join(out), end="")
' 2>/dev/null)"
        reason="$(check_text "$text")"
        if [ -n "$reason" ]; then fail "$name" "$reason"; else pass "$name"; fi
    fi
}

check_openai_nonstream() {
    local model="$1" name="openai_chat_$1" text reason
    request /v1/chat/completions "$WORK_DIR/openai_key" \
        "{\"model\":\"$model\",\"max_tokens\":50,\"messages\":[{\"role\":\"user\",\"content\":\"Count to 3\"}]}" || {
        fail "$name" "$ERROR"
        return
    }
    [ "$STATUS" = "200" ] || {
        fail "$name" "$(status_reason)"
        return
    }
    text="$(python3 -c '
import json, sys
try:
    content = json.load(sys.stdin)["choices"][0]["message"]["content"]
except Exception:
    sys.exit(1)
print(content if isinstance(content, str) else "", end="")
' <"$BODY" 2>/dev/null)" || {
        fail "$name" "no choices[0].message.content in response"
        return
    }
    reason="$(check_text "$text")"
    if [ -n "$reason" ]; then fail "$name" "$reason"; else pass "$name"; fi
}

check_openai_stream() {
    local model="$1" name="openai_chat_stream_$1" datas last text reason
    request /v1/chat/completions "$WORK_DIR/openai_key" \
        "{\"model\":\"$model\",\"max_tokens\":50,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Count to 3\"}]}" || {
        fail "$name" "$ERROR"
        return
    }
    [ "$STATUS" = "200" ] || {
        fail "$name" "$(status_reason)"
        return
    }
    datas="$(tr -d '\r' <"$BODY" | grep '^data:' | sed 's/^data: *//')"
    last="$(printf '%s\n' "$datas" | awk 'NF { e = $0 } END { print e }')"
    if [ -z "$datas" ]; then
        fail "$name" "no SSE data lines in response"
        return
    fi
    if [ "$last" != "[DONE]" ]; then
        fail "$name" "stream does not end with data: [DONE]"
        return
    fi
    text="$(printf '%s\n' "$datas" | python3 -c '
import json, sys
out = []
for line in sys.stdin:
    line = line.strip()
    if not line or line == "[DONE]":
        continue
    chunk = json.loads(line)
    if "error" in chunk:
        print("stream contains an error chunk", file=sys.stderr)
        sys.exit(1)
    for choice in chunk.get("choices") or []:
        out.append((choice.get("delta") or {}).get("content") or "")
print("".join(out), end="")
' 2>/dev/null)" || {
        fail "$name" "stream has an error or unparsable chunk"
        return
    }
    reason="$(check_text "$text")"
    if [ -n "$reason" ]; then fail "$name" "$reason"; else pass "$name"; fi
}

R_BODY='{"model":"'"$OPENAI_MODEL"'","max_output_tokens":200,"input":"Count to 3"}'
R_STREAM_BODY='{"model":"'"$OPENAI_MODEL"'","max_output_tokens":200,"stream":true,"input":"Count to 3"}'

check_responses_nonstream() {
    local name="openai_responses" text reason
    request /v1/responses "$WORK_DIR/openai_key" "$R_BODY" || {
        fail "$name" "$ERROR"
        return
    }
    [ "$STATUS" = "200" ] || {
        fail "$name" "$(status_reason)"
        return
    }
    # The text is every output_text part of every message item (what the SDK's
    # output_text joins); a reasoning model puts a reasoning item first.
    text="$(python3 -c '
import json, sys
try:
    body = json.load(sys.stdin)
    assert body["object"] == "response" and body["status"] == "completed"
    parts = [
        part["text"]
        for item in body["output"]
        if item.get("type") == "message"
        for part in item["content"]
        if part.get("type") == "output_text"
    ]
except Exception:
    sys.exit(1)
print("".join(parts), end="")
' <"$BODY" 2>/dev/null)" || {
        fail "$name" "not a completed response with an output array"
        return
    }
    reason="$(check_text "$text")"
    if [ -n "$reason" ]; then fail "$name" "$reason"; else pass "$name"; fi
}

check_responses_stream() {
    local name="openai_responses_stream" text reason
    request /v1/responses "$WORK_DIR/openai_key" "$R_STREAM_BODY" || {
        fail "$name" "$ERROR"
        return
    }
    [ "$STATUS" = "200" ] || {
        fail "$name" "$(status_reason)"
        return
    }
    # Typed events (`event:` equal to the payload's type), sequence numbers 0..n-1,
    # response.created first and response.completed last, no [DONE]; the deltas'
    # text is also the text of the completed response.
    text="$(tr -d '\r' <"$BODY" | python3 -c '
import json, sys
events, name = [], None
for line in sys.stdin:
    line = line.rstrip("\n")
    if line.startswith("event:"):
        name = line[6:].strip()
    elif line.startswith("data:"):
        data = line[5:].strip()
        if data == "[DONE]":
            sys.exit("stream has a data: [DONE] line")
        try:
            payload = json.loads(data)
        except ValueError:
            sys.exit("stream has an unparsable event")
        if payload.get("type") != name:
            sys.exit("an event is named %s but typed %s" % (str(name)[:40], str(payload.get("type"))[:40]))
        events.append(payload)
        name = None
if not events:
    sys.exit("no SSE events in response")
types = [e.get("type") for e in events]
if "error" in types:
    sys.exit("stream contains an error event")
if types[0] != "response.created":
    sys.exit("first event is %s, not response.created" % str(types[0])[:40])
if types[-1] != "response.completed" or types.count("response.completed") != 1:
    sys.exit("last event is %s, not response.completed" % str(types[-1])[:40])
if [e.get("sequence_number") for e in events] != list(range(len(events))):
    sys.exit("sequence numbers are not 0..n-1")
deltas = "".join(e.get("delta", "") for e in events if e["type"] == "response.output_text.delta")
final = "".join(
    part.get("text", "")
    for item in events[-1]["response"]["output"]
    if item.get("type") == "message"
    for part in item["content"]
    if part.get("type") == "output_text"
)
if deltas != final:
    sys.exit("the deltas and the completed response disagree")
print(deltas, end="")
' 2>&1)" || {
        fail "$name" "${text:0:120}"
        return
    }
    reason="$(check_text "$text")"
    if [ -n "$reason" ]; then fail "$name" "$reason"; else pass "$name"; fi
}

# check_error NAME PATH KEY_FILE BODY WANT FORMAT: WANT is `4xx` (any 4xx but
# 401/403) or an exact status; FORMAT is `anthropic` or `openai`; on anthropic, WANT_TYPE (7th arg,
# optional) is the required error.type.
check_error() {
    local name="$1" want="$5" format="$6" want_type="${7:-}" reason
    request "$2" "$3" "$4" || {
        fail "$name" "$ERROR"
        return
    }
    case "$want" in
        # A validation error: 401/403 would only show the key was refused.
        4xx) [[ "$STATUS" == 4[0-9][0-9] && "$STATUS" != 401 && "$STATUS" != 403 ]] || {
            fail "$name" "$(status_reason), want a 4xx validation error"
            return
        } ;;
        *) [ "$STATUS" = "$want" ] || {
            fail "$name" "status $STATUS, want $want"
            return
        } ;;
    esac
    reason="$(python3 -c '
import json, sys
fmt, want_type = sys.argv[1], sys.argv[2]
try:
    body = json.load(sys.stdin)
except ValueError:
    print("error body is not JSON")
    sys.exit()
err = body.get("error") if isinstance(body, dict) else None
if not isinstance(err, dict):
    print("no error object in body")
elif fmt == "anthropic":
    if body.get("type") != "error":
        print("body type is not \"error\"")
    elif not isinstance(err.get("type"), str) or not err.get("message"):
        print("error lacks type or message")
    elif want_type and err["type"] != want_type:
        print("error type is %s, want %s" % (str(err["type"])[:40], want_type))
elif not {"message", "type", "param", "code"} <= set(err):
    print("error lacks one of message/type/param/code")
elif not err.get("message"):
    print("error message is empty")
' "$format" "$want_type" <"$BODY" 2>/dev/null)"
    if [ -n "$reason" ]; then fail "$name" "$reason"; else pass "$name"; fi
}

check_anthropic_nonstream
check_anthropic_stream
for model in "$CLAUDE_MODEL" "$OPENAI_MODEL"; do
    check_openai_nonstream "$model"
    check_openai_stream "$model"
done
check_error missing_messages_anthropic /v1/messages "$WORK_DIR/anthropic_key" \
    '{"model":"'"$CLAUDE_MODEL"'","max_tokens":50}' 4xx anthropic
check_error missing_messages_openai /v1/chat/completions "$WORK_DIR/openai_key" \
    '{"model":"'"$OPENAI_MODEL"'"}' 4xx openai
check_error bad_key_anthropic /v1/messages "$WORK_DIR/anthropic_bad_key" \
    "$A_BODY" 401 anthropic authentication_error
check_error bad_key_openai /v1/chat/completions "$WORK_DIR/openai_bad_key" \
    '{"model":"'"$OPENAI_MODEL"'","messages":[{"role":"user","content":"Count to 3"}]}' 401 openai
if [ "$CHECK_RESPONSES" = "1" ]; then
    check_responses_nonstream
    check_responses_stream
    check_error missing_input_responses /v1/responses "$WORK_DIR/openai_key" \
        '{"model":"'"$OPENAI_MODEL"'"}' 4xx openai
    check_error bad_key_responses /v1/responses "$WORK_DIR/openai_bad_key" "$R_BODY" 401 openai
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
