"""Training, in its own process: dataset, trainer (TRL), eval gate, status, pipeline; and the runner
that starts it from the bot. Import the module you need: this package imports nothing heavy."""
