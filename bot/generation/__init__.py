"""Writing replies: the worker that runs one model, the engine protocol and its three engines
(transformers, llama.cpp, vLLM), their LoRA following, decoding rules and model files.
Import the module you need: this package imports nothing."""
