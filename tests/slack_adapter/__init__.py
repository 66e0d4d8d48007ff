"""The Slack adapter end to end: the real slack-bolt app, over loopback, against the emulator."""
