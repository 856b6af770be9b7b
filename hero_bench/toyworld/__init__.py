"""ShapesWorld, the toy tier: procedural scenes and captions (scenes.py), tokenizer, model, pretraining."""
