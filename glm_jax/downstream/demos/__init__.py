"""Offline demo tasks over the default corpus, for the fine-tuning demos (configs/finetune/demo_*.py)."""
