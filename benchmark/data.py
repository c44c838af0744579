"""Turn (instruction, response) pairs into chat-templated token ids with response-only labels."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

IGNORE_INDEX = -100

# The names of the training streams a method's ``streams`` returns that the trainer and the regularizers
# know: the data to forget, and the two kinds of data to keep (D_r ``retain``, D_g ``general``). A method
# may add streams of its own names.
FORGET_STREAM = "forget"
RETAIN_STREAMS = ("retain", "general")


@dataclass(frozen=True)
class Example:
    """One training pair. ``source`` names the item it came from, for logs."""

    question: str
    response: str
    source: str = ""


def prompt_text(tokenizer, question: str, system: str | None = None,
                history: Sequence[tuple[str, str]] = ()) -> str:
    """The chat-templated prompt ending where the assistant's reply starts.

    ``history`` holds earlier (question, answer) turns, for ``snap-bench chat --history``; training
    and evaluation never pass it, so their prompts are single-turn.
    """
    messages = [{"role": "system", "content": system}] if system else []
    for q, a in history:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": question})
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = f"{system}\n\n" if system else ""
    turns = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in history)
    return f"{head}{turns}Question: {question}\nAnswer: "


def prompt_ids(tokenizer, question: str, system: str | None = None,
               history: Sequence[tuple[str, str]] = ()) -> list[int]:
    return tokenizer(prompt_text(tokenizer, question, system, history), add_special_tokens=False)["input_ids"]


def encode_example(tokenizer, ex: Example, max_length: int, system: str | None = None) -> dict[str, list[int]]:
    """Prompt + response + end-of-turn; only the response and the end token carry labels.

    Truncation cuts the response's tail, never the prompt, so every example keeps its question.
    """
    p = prompt_ids(tokenizer, ex.question, system)
    eos = tokenizer.eos_token or ""
    r = tokenizer(ex.response.strip() + eos, add_special_tokens=False)["input_ids"]
    ids = (p + r)[:max_length]
    labels = ([IGNORE_INDEX] * len(p) + r)[:max_length]
    return {"input_ids": ids, "labels": labels}


def collate(encoded: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked out of attention and loss."""
    n = max(len(e["input_ids"]) for e in encoded)
    ids = torch.full((len(encoded), n), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), n), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(encoded), n), dtype=torch.long)
    for i, e in enumerate(encoded):
        k = len(e["input_ids"])
        ids[i, :k] = torch.tensor(e["input_ids"])
        labels[i, :k] = torch.tensor(e["labels"])
        mask[i, :k] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class Stream:
    """An endless, seeded, epoch-shuffled sequence of encoded examples.

    Within each chunk of ``bucket`` draws, examples are ordered by length so that a batch's
    members are of similar length and padding wastes little compute.
    """

    def __init__(self, encoded: list[dict[str, list[int]]], seed: int, bucket: int = 1):
        if not encoded:
            raise ValueError("empty stream")
        self.encoded = encoded
        self.rng = random.Random(seed)
        self.bucket = max(1, bucket)
        self._queue: list[int] = []
        self.epochs_started = 0

    def __len__(self) -> int:
        return len(self.encoded)

    def _refill(self) -> None:
        order = list(range(len(self.encoded)))
        self.rng.shuffle(order)
        self.epochs_started += 1
        chunks = [order[i : i + self.bucket] for i in range(0, len(order), self.bucket)]
        self._queue += [j for c in chunks for j in sorted(c, key=lambda j: len(self.encoded[j]["input_ids"]))]

    def take(self, n: int) -> list[dict[str, list[int]]]:
        while len(self._queue) < n:
            self._refill()
        out, self._queue = self._queue[:n], self._queue[n:]
        return [self.encoded[j] for j in out]


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
