//! kiln-server: the Ollama/OpenAI-compatible HTTP server and the `kiln` command line.
