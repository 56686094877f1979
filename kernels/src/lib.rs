//! kiln-kernels: GGML block types, quantized kernels and compute backends.
