"""Model providers: OpenAI-compatible streaming chat (Moonshot, OpenRouter, vLLM, SGLang, demo)."""
