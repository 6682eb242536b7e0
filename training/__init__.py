"""CLIP training on the curated Parquet shards: data with online curation, tokenizer, model, loss, loop, eval."""
