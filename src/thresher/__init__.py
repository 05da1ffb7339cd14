"""thresher: pick the training data that makes an LLM fine-tune work, and prove it."""
__version__ = "0.1.0"
