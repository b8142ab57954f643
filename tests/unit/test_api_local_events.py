"""The local server's translation: HTTP request → API Gateway event, proxy response → HTTP parts."""

from __future__ import annotations

import base64

from servingkit.http_local import build_event, response_parts

HEADERS = [("Content-Type", "application/json"), ("X-Trace", "a"), ("X-Trace", "b"), ("Cookie", "s=1; t=2")]


def test_rest_v1_event_has_the_proxy_shape_and_multi_values() -> None:
    event = build_event("POST", "/invocations?x=1&x=2&y=", HEADERS, b'{"a": 1}')
    assert event["httpMethod"] == "POST" and event["path"] == "/invocations"
    assert event["resource"] == "/{proxy+}" and event["pathParameters"] == {"proxy": "invocations"}
    assert event["multiValueHeaders"]["X-Trace"] == ["a", "b"] and event["headers"]["X-Trace"] == "b"
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["requestId"] and event["requestContext"]["stage"] == "$default"


def test_http_api_v2_and_function_url_events() -> None:
    v2 = build_event("GET", "/health?q=1", HEADERS, b"", payload_version="2.0")
    assert v2["version"] == "2.0" and v2["rawPath"] == "/health" and v2["rawQueryString"] == "q=1"
    assert v2["headers"]["x-trace"] == "a,b", "v2 joins repeated headers with commas"
    assert v2["cookies"] == ["s=1", "t=2"] and "cookie" not in v2["headers"]
    assert v2["requestContext"]["http"]["method"] == "GET" and "body" not in v2
    url = build_event("GET", "/health", [], b"", payload_version="url")
    assert ".lambda-url." in url["requestContext"]["domainName"] and url["routeKey"] == "$default"
    assert "pathParameters" not in url


def test_binary_bodies_are_base64_encoded_text_bodies_are_not() -> None:
    binary = build_event("POST", "/x", [("Content-Type", "application/octet-stream")], b"\x00\xff")
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\x00\xff"
    not_utf8 = build_event("POST", "/x", [("Content-Type", "text/csv")], b"\xff\xfe")
    assert not_utf8["isBase64Encoded"] is True
    csv = build_event("POST", "/x", [("Content-Type", "text/csv; charset=utf-8")], b"a,b\n1,2\n")
    assert csv["body"] == "a,b\n1,2\n" and csv["isBase64Encoded"] is False


def test_response_parts_of_v1_and_v2_results() -> None:
    status, headers, body = response_parts(
        {"statusCode": 405, "multiValueHeaders": {"Allow": ["GET"], "X": ["1", "2"]}, "body": "{}"}
    )
    assert status == 405 and headers == [("Allow", "GET"), ("X", "1"), ("X", "2")] and body == b"{}"
    status, headers, body = response_parts(
        {
            "statusCode": 200,
            "headers": {"Content-Type": "image/png"},
            "cookies": ["a=1"],
            "body": base64.b64encode(b"\x89PNG").decode(),
            "isBase64Encoded": True,
        }
    )
    assert headers == [("Content-Type", "image/png"), ("Set-Cookie", "a=1")] and body == b"\x89PNG"
