"""Entity task packs: the data (``packs/``) and their loader (the quality gates are ``snap_bench.evaluate.pack_gates``).

``load_pack("peter_parker")`` returns a validated :class:`Pack`; ``load_general()`` returns the
general set D_g. See ``README.md`` beside this file for the format.
"""

from snap_bench.tasks.packs import (  # noqa: F401
    CATEGORIES,
    GENERAL_SLUG,
    SETS,
    Item,
    Pack,
    PackError,
    load_general,
    load_pack,
    load_pack_dir,
    pack_root,
    resolve_entity,
    shipped_entities,
    split_items,
    stratified_sample,
)
