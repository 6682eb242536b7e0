"""The paper's effect in miniature (`make reproduce`): a synthetic multilingual world through the real
pipeline and trainer, comparing the raw pool with balanced data and English-only with worldwide data.

world: the concepts (Babel-ImageNet names), their drawn looks and the alt-text pool; the pipeline
(jobs/reproduce_pipeline.py): the metadata, curate and download jobs over it; arm: one training run and its zero-shot scores;
analysis: the numbers; report: reproduce.html and reproduce.json; the command line: jobs/reproduce.py.
"""
