"""Load, schema-check and split entity task packs.

Structural problems (bad JSON, missing or mistyped fields, duplicate ids, unknown categories)
are :class:`PackError` naming the file, the line and the field. Semantic quality gates that
need a judge or an embedding model live in :mod:`snap_bench.evaluate.pack_gates`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from snap_bench.errors import SnapBenchError
from snap_bench.registry import ENTITIES
from snap_bench.util.jsonl import iter_jsonl

SETS = ("forget", "retain", "multihop", "general")
CATEGORIES = ("factual", "relational", "open_ended", "implicit", "multi_hop")
SET_CATEGORIES = {
    "forget": {"factual", "relational", "open_ended", "implicit"},
    "retain": {"factual", "relational", "open_ended", "implicit"},
    "multihop": {"multi_hop"},
    "general": {"factual", "relational", "open_ended", "implicit"},
}
ENTITY_FILES = ("forget", "retain", "multihop")
GENERAL_SLUG = "general"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_FIELDS = {
    "id": str,
    "entity": str,
    "set": str,
    "category": str,
    "question": str,
    "response": str,
    "answer": str,
    "keywords": list,
}
MAX_LINE_BYTES = 64 * 1024


class PackError(SnapBenchError):
    pass


@dataclass(frozen=True)
class Item:
    id: str
    entity: str
    set: str
    category: str
    question: str
    response: str
    answer: str
    keywords: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = self.__dict__.copy()
        d["keywords"] = list(self.keywords)
        return d


@dataclass
class Pack:
    slug: str
    name: str
    aliases: list[str]
    kind: str
    description: str
    path: Path
    sets: dict[str, list[Item]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases]

    def __getitem__(self, set_name: str) -> list[Item]:
        return self.sets.get(set_name, [])


def pack_root() -> Path:
    return Path(__file__).resolve().parent / "packs"


def _inside(pack_dir: Path, f: Path) -> None:
    """Refuse a pack file that is a symlink leading out of its pack folder (a shared pack must not read
    ~/.ssh or /etc on the user's machine)."""
    if f.is_symlink():
        target = f.resolve()
        if not target.is_relative_to(pack_dir.resolve()):
            raise PackError(f"{f}: a symlink pointing outside the pack directory (to {target}); "
                            "copy the file into the pack instead")


def _read_jsonl(path: Path, expect_set: str, expect_entity: str) -> list[Item]:
    items: list[Item] = []
    for ln, obj in iter_jsonl(path, max_line_bytes=MAX_LINE_BYTES, error=PackError):
        where = f"{path}:{ln}"
        for name, typ in _FIELDS.items():
            if name not in obj:
                raise PackError(f"{where}: missing field '{name}'")
            if not isinstance(obj[name], typ):
                raise PackError(f"{where}: field '{name}' must be {typ.__name__}, got {type(obj[name]).__name__}")
        if not all(isinstance(k, str) for k in obj["keywords"]):
            raise PackError(f"{where}: field 'keywords' must be a list of strings")
        if obj["set"] != expect_set:
            raise PackError(f"{where}: field 'set' is {obj['set']!r} but the file holds {expect_set!r} items")
        if obj["entity"] != expect_entity:
            raise PackError(f"{where}: field 'entity' is {obj['entity']!r}, expected {expect_entity!r}")
        if obj["category"] not in SET_CATEGORIES[expect_set]:
            raise PackError(
                f"{where}: field 'category' is {obj['category']!r}; expected one of "
                f"{', '.join(sorted(SET_CATEGORIES[expect_set]))}"
            )
        for name in ("id", "question", "response"):
            if not obj[name].strip():
                raise PackError(f"{where}: field '{name}' is empty")
        items.append(
            Item(
                id=obj["id"],
                entity=obj["entity"],
                set=obj["set"],
                category=obj["category"],
                question=obj["question"].strip(),
                response=obj["response"].strip(),
                answer=obj["answer"].strip(),
                keywords=tuple(k.strip() for k in obj["keywords"] if k.strip()),
            )
        )
    return items


def load_pack_dir(path: Path | str) -> Pack:
    """Load and structurally check one pack folder (``meta.json`` plus ``*.jsonl``)."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not path.is_dir():
        raise PackError(f"{path}: not a pack directory")
    if not meta_path.is_file():
        raise PackError(f"{path}: missing meta.json")
    _inside(path, meta_path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"{meta_path}: invalid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise PackError(f"{meta_path}: expected a JSON object")
    slug = meta.get("entity")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise PackError(f"{meta_path}: field 'entity' must be a slug like 'peter_parker' ([a-z0-9_])")
    if not isinstance(meta.get("name"), str) or not meta["name"].strip():
        raise PackError(f"{meta_path}: field 'name' must be a non-empty string")
    aliases = meta.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise PackError(f"{meta_path}: field 'aliases' must be a list of strings")
    pack = Pack(
        slug=slug,
        name=meta["name"].strip(),
        aliases=[a.strip() for a in aliases if a.strip()],
        kind=str(meta.get("kind", "fictional")),
        description=str(meta.get("description", "")),
        path=path,
    )
    files = ("general",) if slug == GENERAL_SLUG else ENTITY_FILES
    for set_name in files:
        f = path / f"{set_name}.jsonl"
        if not f.is_file():
            raise PackError(f"{path}: missing {set_name}.jsonl")
        _inside(path, f)
        items = _read_jsonl(f, set_name, slug)
        if not items:
            raise PackError(f"{f}: no items")
        pack.sets[set_name] = items
    seen: dict[str, str] = {}
    for set_name, items in pack.sets.items():
        for it in items:
            if it.id in seen:
                raise PackError(f"{path}: duplicate id {it.id!r} (in {seen[it.id]} and {set_name})")
            seen[it.id] = set_name
    return pack


def _scan_packs(registry) -> None:
    root = pack_root()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and d.name != GENERAL_SLUG and (d / "meta.json").is_file():
                registry.register(d.name, d, replace=True)


ENTITIES.add_loader(_scan_packs)


def shipped_entities() -> list[str]:
    """Slugs of the entity packs that ship with snap-bench (not plugins or pack paths)."""
    root = pack_root()
    return sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != GENERAL_SLUG
                  and (d / "meta.json").is_file()) if root.is_dir() else []

_cache: dict[Path, Pack] = {}


def resolve_entity(name: str) -> Path:
    """Map a registered slug, or an explicit path to a pack folder, to its folder.

    Entity names never become file paths: a slug must be registered, and anything else must be
    an existing directory given as a path (containing a separator) with a ``meta.json``.
    """
    if name in ENTITIES:
        return ENTITIES.get(name)
    if ".." in Path(name).parts:
        raise PackError(f"entity path {name}: '..' is not allowed in an entity path; give the pack folder's "
                        "absolute path or a path below the working directory")
    if ("/" in name or name.startswith(".")) and Path(name).is_dir():
        p = Path(name).resolve()
        if not (p / "meta.json").is_file():
            raise PackError(f"{name}: not a pack directory (no meta.json)")
        return p
    ENTITIES.get(name)  # raises the "unknown entity ... valid entities: ..." error
    raise AssertionError("unreachable")


def load_pack(name: str) -> Pack:
    path = resolve_entity(name)
    if path not in _cache:
        _cache[path] = load_pack_dir(path)
    return _cache[path]


def load_general() -> Pack:
    path = pack_root() / GENERAL_SLUG
    if path not in _cache:
        _cache[path] = load_pack_dir(path)
    return _cache[path]


def _stable_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def split_items(items: list[Item], n_train: int, seed: int) -> tuple[list[Item], list[Item]]:
    """Deterministic train/eval split, proportional across categories.

    Like the paper, ``n_train`` items are sampled for training with each category keeping its
    share (largest-remainder rounding); the rest are held out for evaluation. The split depends
    only on the seed and the item ids, never on file order or Python's hash seed.
    """
    if n_train <= 0:
        return [], list(items)
    # Never train on more than half a set: a small custom pack must keep held-out items to score.
    return stratified_sample(items, min(n_train, len(items) // 2), seed)


def _stratum(it: Item) -> tuple[str, str]:
    return (it.entity, it.category)


def stratified_sample(items: list[Item], n: int | None, seed: int, salt: str = "") -> tuple[list[Item], list[Item]]:
    """(``n`` items drawn proportionally across strata, the rest), both sorted by id.

    A stratum is (entity, category), so a sample of several entities' items keeps each entity's and each
    category's share. Quotas use largest-remainder rounding, so every stratum gets its exact share rounded
    up or down (the sample's mix is the full set's, ±1 item per stratum). Which items are drawn depends
    only on ``seed``, ``salt`` and the item ids: never on file order or Python's hash seed. ``n`` None or
    at least ``len(items)`` keeps everything. ``salt`` tells draws from the same items apart (an evaluation
    subsample must not be the same draw as the training split).
    """
    key = lambda i: i.id  # noqa: E731
    if n is None or n >= len(items):
        return sorted(items, key=key), []
    if n <= 0:
        return [], sorted(items, key=key)
    by_stratum: dict[tuple[str, str], list[Item]] = {}
    for it in sorted(items, key=key):
        by_stratum.setdefault(_stratum(it), []).append(it)
    total = len(items)
    exact = {c: n * len(v) / total for c, v in by_stratum.items()}
    quota = {c: int(x) for c, x in exact.items()}
    short = n - sum(quota.values())
    for c in sorted(exact, key=lambda c: (-(exact[c] - quota[c]), c))[:short]:
        quota[c] += 1
    chosen: list[Item] = []
    rest: list[Item] = []
    for c, group in sorted(by_stratum.items()):
        parts = (seed, group[0].entity, group[0].set, c[1]) + ((salt,) if salt else ())
        rng = random.Random(_stable_seed(*parts))
        order = group[:]
        rng.shuffle(order)
        chosen += order[: quota[c]]
        rest += order[quota[c] :]
    return sorted(chosen, key=key), sorted(rest, key=key)
