"""LLM protocols behind one transport interface: errors, request/answer types, Ollama, OpenAI."""
