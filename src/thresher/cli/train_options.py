"""The training options that `thresher train` and `thresher compare | curve |
sweep` share (learning rate, LoRA rank and alpha, batch size, sequence length,
threads, dtype, engine, model): declared once, so both command groups spell,
default and document them the same way. Options whose meaning differs between
the two (steps, epochs, template, held-out rows) stay with their command.
"""
from __future__ import annotations

import typer

ModelOpt = typer.Option(None, "--model", help="Local Hugging Face causal LM folder (default: the bundled SmolLM2-135M-Instruct).")
MaxStepsOpt = typer.Option(None, "--max-steps", help="Optimizer steps per run (wins over --epochs; equal steps for every run).")
LrOpt = typer.Option(1e-3, "--lr")
BatchOpt = typer.Option(8, "--batch-size")
RankOpt = typer.Option(8, "--lora-r")
AlphaOpt = typer.Option(16.0, "--lora-alpha")
MaxLenOpt = typer.Option(256, "--max-length", help="Tokens per row (a long prompt loses the middle of its input; the instruction and the response start stay).")
ThreadsOpt = typer.Option(None, "--threads", help="Torch threads (default: all cores).")
EngineOpt = typer.Option("own", "--engine", help="Training engine: own (thresher's loop) | hf (transformers.Trainer, same loss and steps).")
DtypeOpt = typer.Option("auto", "--dtype", help="auto|float32|bfloat16 (auto: bf16 only on hardware with native bf16 support).")
