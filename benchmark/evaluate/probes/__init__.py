"""Knowledge probes for forget items: is the unlearned knowledge gone, or only hidden?

UA counts how often a model declines a forget question asked plainly. A model can decline
and still hold the knowledge, so four probes look past that, one module each:

- :func:`answer_logprob` (:mod:`.logprob`): the mean per-token log-probability of the TRUE
  answer as the assistant's reply, under the same chat template as training. Unlearning that
  only teaches a refusal leaves it close to where it was; unlearning that removes the
  knowledge lowers it.
- :func:`extraction_ua` (:mod:`.framings`): UA re-measured under the adversarial framings in
  :data:`FRAMINGS` (role-play, "ignore all previous instructions", an assistant prefill, a quiz
  paraphrase, the entity's names masked, a French instruction). A refusal that only fires on
  the plain phrasing falls here.
- :func:`relearning_attack` (:mod:`.relearning`): a copy of the model is fine-tuned for a few
  steps on a handful of forget questions with their true answers; UA and the answer
  log-probability are then measured on the OTHER forget questions. Knowledge that was only
  suppressed comes back quickly on questions the attack never showed (Lynch et al. 2024,
  arXiv 2402.16835; Hu et al. 2024, arXiv 2406.13356). The caller passes the training entry
  point in (``train=``): evaluation does not import the training layer.
- :func:`fluency` (:mod:`.fluency`): the share of degenerate responses (empty, or stuck in a
  repetition loop), so a method that "forgets" by breaking generation is visible as such.

:func:`run_probes` (:mod:`.bundle`) bundles them on at most ``probe_limit`` forget items per
probe, so that on SmolLM2-135M on a 2-core CPU the probes add minutes, not hours.
"""

from snap_bench.evaluate.probes.bundle import DEFAULT_PROBE_LIMIT, probe_items, run_probes
from snap_bench.evaluate.probes.fluency import degenerate, fluency, fluency_by_set
from snap_bench.evaluate.probes.framings import (FRAMINGS, FramedRecord, Framing, extraction_probe, extraction_ua,
                                               framed_prompt_ids, mask_names, summarise_extraction)
from snap_bench.evaluate.probes.logprob import answer_logprob, answer_logprob_by_id, logprob_change
from snap_bench.evaluate.probes.relearning import Trainer, relearn_split, relearning_attack

__all__ = [
    "DEFAULT_PROBE_LIMIT", "FRAMINGS", "FramedRecord", "Framing", "Trainer", "answer_logprob", "answer_logprob_by_id",
    "degenerate", "extraction_probe", "extraction_ua", "fluency", "fluency_by_set", "framed_prompt_ids",
    "logprob_change", "mask_names", "probe_items", "relearn_split", "relearning_attack", "run_probes",
    "summarise_extraction",
]
