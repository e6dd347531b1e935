"""Image → faces → embeddings."""
