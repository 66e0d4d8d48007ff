"""The Discord adapter: the client and its event handlers (client.py), application commands
(commands.py) and their autocomplete (suggestions.py), which conversation a message belongs to
(conversations.py), who asks and from where (caller.py), showing a reply (screen.py), the feedback
buttons and modal (feedback.py), and connecting: endpoints, intents and the mentions-and-DMs mode
without the Message Content intent (gateway.py). Named so that it cannot shadow the `discord` SDK."""

PLATFORM = "discord"
