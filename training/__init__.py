"""Training: the base LLM, KV caches (plaintext ► activation), LoRA distillation
(plaintext/activation ► parametric), recitation (parametric ► plaintext), the
evaluation gate, MLflow tracking and the adapter registry serving uses."""
