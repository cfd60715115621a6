"""Where PhyPrompt's nodes sit in ComfyUI's node library, and the schema fields that depend on the core.

Every node lives under one `PhyPrompt/` root, one sub-category per job, so the pack reads as one group in
the node library and its jobs stay apart as it grows. Categories are not saved in workflows: moving a node
between them never breaks a user's graph (its node id does, and stays fixed).
"""

from __future__ import annotations

import dataclasses

from comfy_api.latest import io

ROOT = "PhyPrompt"
REFINE = f"{ROOT}/refine"
VIDEO = f"{ROOT}/video"
JUDGE = f"{ROOT}/judge"

# words an artist may type in the node search for what the pack does, on top of each node's own
REFINE_ALIASES = ("prompt enhancer", "prompt enhance", "enhance prompt", "prompt rewrite", "LLM", "physics",
                  "PhyPrompt")

# search_aliases arrived in core's V3 schema after 0.3.75 (which rejects unknown fields)
_SCHEMA_FIELDS = {f.name for f in dataclasses.fields(io.Schema)}


def node_schema(*, search_aliases: tuple[str, ...] | list[str] = (), **fields) -> io.Schema:
    """`io.Schema(**fields)`, with the search aliases where the running core knows them."""
    if "search_aliases" in _SCHEMA_FIELDS:
        fields["search_aliases"] = list(dict.fromkeys(search_aliases))
    return io.Schema(**fields)
