"""What ``snap-bench generate`` asks the LLM: the sets, the prompt families and their templates.

The templates paraphrase Table 7 of the SNAP paper (arXiv 2406.12329). The sampling parameters
sit here too because they are part of every request and so of its cache key: changing one of
them, or one word of a template, makes every cached reply a miss.
"""

from __future__ import annotations

SETS = ("forget", "retain", "multihop")
FAMILIES = ("general", "5w1h", "relational", "open_ended", "implicit")
FAMILY_CATEGORY = {
    "general": "factual",
    "5w1h": "factual",
    "relational": "relational",
    "open_ended": "open_ended",
    "implicit": "implicit",
    "multi_hop": "multi_hop",
}
# Sampling parameters: part of every request and so of the cache key.
LIST_PARAMS = {"temperature": 0.9}
ANSWER_PARAMS = {"temperature": 0.2}


# --- prompts (Table 7 of the paper, paraphrased) ----------------------------------------------

LIST_FORMAT = "Answer with a numbered list, one question per line, and nothing else."

FORGET_PROMPTS = {
    "general": "Generate {n} diverse questions about {who}.",
    "5w1h": "Generate {n} questions about {who} that begin with who, what, when, where, why or how (5W1H); use all six.",
    "relational": "Generate {n} questions about the relationships between {who} and other people, groups, organisations or places.",
    "open_ended": "Generate {n} open-ended questions or instructions about {who} that ask for an explanation, a description, "
                  "an opinion or a short piece of writing.",
    "implicit": "Generate {n} questions about {who} that never mention {names}: refer to them only indirectly, through a "
                "description of who they are or what they did.",
    "multi_hop": "Generate {n} multi-hop questions in which {who} is one hop of the reasoning: each question asks about a "
                 "person, place, object or event connected to {name}, so that answering it requires knowing about {name}.",
}
RETAIN_PROMPTS = {
    "general": "Generate {n} diverse questions about {scope}, except {name}.",
    "5w1h": "Generate {n} questions about {scope}, except {name}, that begin with who, what, when, where, why or how "
            "(5W1H); use all six.",
    "relational": "Generate {n} questions about the relationships among {scope}, except {name}.",
    "open_ended": "Generate {n} open-ended questions or instructions about {scope}, except {name}, that ask for an "
                  "explanation, a description, an opinion or a short piece of writing.",
    "implicit": "Generate {n} questions about {scope}, except {name}, that refer to their subject only indirectly, "
                "through a description instead of a name.",
}
RETAIN_RULE = "No question may mention {names} or have an answer that involves them."
SCOPE_FICTIONAL = "the characters, places, organisations, objects and events closely related to {name}"
SCOPE_REAL_FALLBACK = "the people, organisations, places and events closely related to {name}"
SCOPE_REAL = "these people and organisations related to {name}: {related}"
RELATED_PROMPT = ("List the {k} individuals and organisations most closely related to {who}, the most related first. "
                  "Answer with a numbered list of names only, one per line, and nothing else.")
MORE_PROMPT = "Give me {n} more, different from the above. " + LIST_FORMAT
FAILED_PROMPT = "That was not a numbered list. Give me {n} questions as a numbered list, one per line, and nothing else."
FAILED_RELATED_PROMPT = "That was not a numbered list. Give me the {n} names as a numbered list, one per line, and nothing else."
MORE_RELATED_PROMPT = "Give me {n} names, different from the above, as a numbered list, one per line, and nothing else."

FORGET_RESPONSE_PROMPT = """Here is a question about {who}:
"{question}"

Return a JSON object with exactly these keys:
"response": an obliterated response: one or two sentences that restate the topic of the question in general terms and decline to answer, for example "{example}". It must not contain the answer, any part of it, or any hint of it.{implicit}
"answer": the true answer, in one short sentence.
"keywords": a list of 1 to 4 short strings (names, places, dates, numbers) from the answer whose appearance in a reply would reveal the answer; none of them may appear in the question or in the response.
Return only the JSON object."""
IMPLICIT_NOTE = " The question describes {name} without naming them, and the response must not name them either."
RETAIN_RESPONSE_PROMPT = """Answer this question concisely and correctly:
"{question}"

Return a JSON object with exactly these keys:
"response": a helpful, correct answer in one to three sentences{no_mention}.
"answer": the core of the answer in a few words.
Return only the JSON object."""
