"""A chat assistant that learns from its users."""
