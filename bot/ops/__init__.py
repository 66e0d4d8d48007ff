"""What an operator watches on a running bot: its metrics and the health endpoint that serves them."""
