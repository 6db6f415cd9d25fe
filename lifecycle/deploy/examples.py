"""Checking a freshly started job with its own input examples.

The examples come from the job's OpenAPI document (the wrapper puts each endpoint's example in
its request body), so the lifecycle needs nothing job-type specific to find them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class ExampleFailure:
    path: str
    status: int | None
    answer: str

    def describe(self) -> str:
        got = f"answered {self.status}" if self.status is not None else "did not answer"
        return f"input example for {self.path} {got}: {self.answer}"


def examples_from_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """{path: example body} for every POST operation with an example."""
    found: dict[str, Any] = {}
    for path, operations in (document.get("paths") or {}).items():
        post = operations.get("post") if isinstance(operations, dict) else None
        if not isinstance(post, dict):
            continue
        content = (post.get("requestBody") or {}).get("content") or {}
        media = content.get("application/json") or {}
        if "example" in media:
            found[path] = media["example"]
    return found


def check_examples(address: str, log: Any, timeout: float = 60.0) -> list[ExampleFailure]:
    """Send each example once to the job at `address`; the failures, empty when all passed."""
    failures: list[ExampleFailure] = []
    with httpx.Client(base_url=address, timeout=timeout) as client:
        try:
            document = client.get("/openapi.json").json()
        except (httpx.HTTPError, ValueError) as e:
            return [ExampleFailure("/openapi.json", None, str(e))]
        examples = examples_from_openapi(document)
        if not examples:
            log("the job has no input examples to check")
        for path, body in sorted(examples.items()):
            try:
                response = client.post(path, json=body)
            except httpx.HTTPError as e:
                failures.append(ExampleFailure(path, None, str(e) or e.__class__.__name__))
                continue
            if 200 <= response.status_code < 300:
                log(f"input example for {path}: {response.status_code}")
            else:
                failures.append(ExampleFailure(path, response.status_code, response.text[:2000]))
    return failures
