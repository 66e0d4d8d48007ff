"""Shared by the console's tests: a signed-in client, the CSRF token of a page, a hostile message."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from bot.core import Core
from bot.web.app import create_app
from bot.web.auth import OneTimeLinks

# Everything a user may write that must show as text: a script, HTML, Slack and Discord markup, length.
HOSTILE = "<script>alert('x')</script> <b>bold</b> <!channel> <@U123> @everyone [a](https://evil.example) " + "é" * 300


def signed_in_client(core: Core, name: str = "owner", owns_examples: bool = True) -> TestClient:
    """A client signed in through a one-time link (the data directory's owner, an admin)."""
    links = OneTimeLinks()
    client = TestClient(create_app(core, owns_examples, links), follow_redirects=False)
    assert client.get(f"/signin/{links.issue(name)}").status_code == 303
    return client


def csrf_of(client: TestClient, path: str = "/exchanges") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "every page a signed-in admin sees carries the CSRF token"
    return found.group(1)
