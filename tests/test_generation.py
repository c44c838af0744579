import pytest
import torch

from snap_bench.data import prompt_ids
from snap_bench.evaluate.generation import generate, generate_ids


# A deprecated cache argument would decode without context once transformers drops it: fail on the warning now.
@pytest.mark.filterwarnings("error::FutureWarning")
def test_batched_generation_matches_hf_greedy(tiny):
    qs = ["Who is Peter Parker?", "Name three colours of the rainbow, please, in order.", "Hi"]
    ours = generate(tiny.model, tiny.tokenizer, qs, max_new_tokens=12, batch_size=8)
    for q, o in zip(qs, ours):
        ids = torch.tensor([prompt_ids(tiny.tokenizer, q)])
        ref = tiny.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                  pad_token_id=tiny.tokenizer.pad_token_id)
        assert o == tiny.tokenizer.decode(ref[0, ids.shape[1]:], skip_special_tokens=True).strip()
