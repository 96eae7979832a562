"""Training stages: SFT (and later P4D, GRPO) compose TRL's trainers; never copy them."""
