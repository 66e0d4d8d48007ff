"""Chat-platform adapters: translate platform events to and from the core's values."""
