"""A language model whose log-probs are known in closed form, for hand-computed loss tests."""

import torch


class ToyLM(torch.nn.Module):
    """Logits = one learnable vector, the same at every position: log-probs are known in closed form."""

    def __init__(self, logits):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor(logits, dtype=torch.float32))

    def get_output_embeddings(self):
        return None

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.bias.expand(*input_ids.shape, -1)})()
