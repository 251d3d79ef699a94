"""Model providers behind one interface (``LLMProvider``): embedded llama.cpp, Ollama, OpenAI."""
