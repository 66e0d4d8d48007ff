"""The Slack adapter (slack-bolt): the app and its listeners (app.py), Socket Mode (socket_mode.py)
and HTTP mode (http.py), what is written (format.py), showing a reply with edits (screen.py) or
Slack's native streaming (stream.py), the feedback buttons and correction modal (feedback.py),
and the AI app side panel (assistant.py)."""

PLATFORM = "slack"
