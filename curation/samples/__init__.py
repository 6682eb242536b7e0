"""Generated inputs for tests, benchmarks and `make sample`; nothing here runs in the curate job.

curation.inputs reads crawls; this package writes them, kept apart so that what decides the
curate output (jobs.curate.CODE_FILES) stays separate from what only builds test data:
wat_writer (WAT files from page dicts), warc_to_wat (page dicts from a real WARC's HTML) and
alt_texts (the built-in multilingual sample: pages, texts and matching metadata).
"""
