"""LoRA fine-tuning, held-out metrics, and the evaluation arms built on them.

Heavy libraries (torch, transformers, peft) load only when a function runs.
"""
from thresher.train.examples import Encoded, Examples, encode
from thresher.train.lora import TrainConfig, TrainResult, fine_tune, load_adapter, save_adapter
from thresher.train.metrics import (classification_metrics, detect_label_set, evaluate_model, generation_metrics,
                                    label_logprobs, response_loss)

__all__ = ["Encoded", "Examples", "encode", "TrainConfig", "TrainResult", "fine_tune", "load_adapter",
           "save_adapter", "classification_metrics", "detect_label_set", "evaluate_model", "generation_metrics",
           "label_logprobs", "response_loss"]
