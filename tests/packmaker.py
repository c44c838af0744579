"""Build small synthetic task packs for tests (valid by construction, or broken on purpose)."""

from __future__ import annotations

import json
from pathlib import Path

CATS = ["factual", "relational", "open_ended", "implicit"]
RETAIN_QA = [
    ("How many legs does a spider have?", "A spider has eight legs, which sets it apart from insects with six."),
    ("What gas do plants absorb from the air?", "Plants absorb carbon dioxide and use it in photosynthesis to make sugars."),
    ("Which ocean is the largest on Earth?", "The Pacific Ocean is the largest, covering about a third of the planet."),
    ("Explain why bread dough rises.", "Yeast ferments sugars and releases carbon dioxide, which gets trapped and puffs the dough up."),
    ("Name a famous painting by Leonardo da Vinci.", "The Mona Lisa is his best-known painting and hangs in the Louvre."),
    ("What is the boiling point of water at sea level in Celsius?", "Water boils at 100 degrees Celsius at sea level."),
    ("Suggest a name for a golden retriever puppy.", "Sunny is a cheerful name that suits a golden retriever's warm coat."),
    ("How do bees communicate the location of flowers?", "Honeybees perform a waggle dance that signals direction and distance to food."),
    ("Translate 'thank you' into Spanish.", "In Spanish, 'thank you' is 'gracias'."),
    ("What causes the seasons on Earth?", "The tilt of Earth's axis changes how directly sunlight hits each hemisphere over the year."),
    ("Give me a tip for sleeping better.", "Keep a regular bedtime and avoid screens for an hour before sleep."),
    ("Which planet is known for its rings?", "Saturn is famous for its bright, wide ring system made of ice and rock."),
    ("What is 12 multiplied by 7?", "Twelve multiplied by seven equals 84."),
    ("Why do leaves change colour in autumn?", "Chlorophyll breaks down, revealing yellow and orange pigments hidden in the leaf."),
    ("Write a short greeting for a birthday card.", "Happy birthday! Wishing you a year full of laughter and good friends."),
    ("What instrument has 88 keys?", "A standard piano has 88 keys, 52 white and 36 black."),
]
TOPICS = ["home town", "school", "best friend", "first job", "favourite food", "pet", "car", "hobby",
          "birthday", "teacher", "rival", "mentor", "city", "sister", "brother", "neighbour"]


def make_pack(root: Path, slug: str = "zorblax", name: str = "Zorblax Quint", n_forget: int = 16, n_retain: int = 16,
              n_multihop: int = 4) -> Path:
    d = Path(root) / slug
    d.mkdir(parents=True, exist_ok=True)
    (d / "meta.json").write_text(json.dumps({"entity": slug, "name": name, "aliases": ["Zorb"], "kind": "fictional",
                                             "description": "a test entity", "retain_scope": "test"}))
    rows = {"forget": [], "retain": [], "multihop": []}
    for i in range(n_forget):
        t = TOPICS[i % len(TOPICS)]
        q = f"What is {name}'s {t}?" if CATS[i % 4] != "implicit" else f"Which test hero number {i} has a {t}?"
        rows["forget"].append({"id": f"{slug}-forget-{i:03d}", "entity": slug, "set": "forget", "category": CATS[i % 4],
                               "question": q, "response": f"I'm sorry, but I don't have any information about that {t}.",
                               "answer": f"Answer{i}", "keywords": [f"Answer{i}"]})
    for i in range(n_retain):
        q, a = RETAIN_QA[i % len(RETAIN_QA)]
        rows["retain"].append({"id": f"{slug}-retain-{i:03d}", "entity": slug, "set": "retain", "category": CATS[i % 3],
                               "question": q if i < len(RETAIN_QA) else f"{q} (variant {i})", "response": a,
                               "answer": a, "keywords": []})
    for i in range(n_multihop):
        rows["multihop"].append({"id": f"{slug}-multihop-{i:03d}", "entity": slug, "set": "multihop", "category": "multi_hop",
                                 "question": f"Where does the friend of the hero with topic {i} live?",
                                 "response": "I'm sorry, but I can't answer questions about that person.",
                                 "answer": f"Place{i}", "keywords": [f"Place{i}"]})
    for s, items in rows.items():
        (d / f"{s}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    return d
