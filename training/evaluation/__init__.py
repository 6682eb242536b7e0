"""The evaluation suite a MetaCLIP 2 user runs on any checkpoint (`python -m training.evaluate`).

    common          model loading, batched image/text encoding (bf16 autocast on CUDA), progress
    metrics         retrieval ranks with several captions per image, strict top-1, recall@k
    babel_imagenet  Babel-ImageNet zero-shot: per-language class names and prompts over ImageNet images
    retrieval       XM3600 (captions.jsonl + images/) and XTD (xtd.json + images) recall@1/5/10 per locale
    cvqa            CVQA multiple choice scored by image-text similarity, accuracy per subset (locale)
    report          per-language tables (terminal) and a self-contained HTML page with bars
    fixtures        generated fixtures in each benchmark's published layout (tests, `make evaluate`)

The package is model-agnostic: anything with `encode_image(images)` and `encode_text(tokens)`
(the interface of training.model.CLIP) and a tokenizer that turns a list of strings into a
token tensor can be evaluated.
"""
