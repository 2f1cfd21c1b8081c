"""Glue for training frameworks; each submodule imports its framework only when imported itself.

    muonlab.integrations.hf     Hugging Face ``transformers.Trainer``: MuonlabTrainer, optimizers()

PyTorch Lightning, accelerate, torch.compile and torchrun need no glue: see docs/integrations.md.
"""
