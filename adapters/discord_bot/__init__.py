"""The Discord adapter: the client and its event handlers (client.py), application commands
(commands.py), which conversation a message belongs to (conversations.py), and sending (screen.py).
Named so that it cannot shadow the `discord` SDK."""
