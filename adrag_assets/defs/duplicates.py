"""Near-duplicate photos in the live index, as an asset: the same shot exported twice.

The pairs and their groups are Dagster metadata (a markdown table with a few thumbnails, and
the groups as JSON): they are for people tidying the library, they are small next to the
photos (a few groups per thousand), and they are recomputed whenever the index changes.
Search does not read them: it drops near duplicates itself, from the candidates' own vectors,
so a fresh upload is handled before this asset runs again.

(No ``from __future__ import annotations`` here: Dagster reads the context annotation.)
"""

import dagster as dg

from adrag_assets.defs.resources import GROUP, MilvusResource, VolumeResource
from adrag_assets.images.decode import MAX_PHOTO_BYTES
from adrag_assets.images.thumbnails import thumbnail_markdown
from adrag_assets.index.diversity import collection_threshold
from adrag_assets.index.duplicates import NearDuplicates, find_near_duplicates
from adrag_assets.index.milvus import PROP_ENCODER_ID
from adrag_assets.settings import load_settings
from adrag_assets.volume import Volume

LISTED_GROUPS = 20  # rows of the markdown table
THUMBNAIL_GROUPS = 3  # groups shown as thumbnails: each costs a read of its photos
THUMBNAILS_PER_GROUP = 4
JSON_GROUPS = 500  # groups in the JSON metadata; the counts always cover all of them


@dg.asset(
    deps=["image_index"],
    automation_condition=dg.AutomationCondition.eager(),
    group_name=GROUP,
    kinds={"milvus"},
    description="Pairs of photos in the live index whose CLIP cosine is at least "
    "ADRAG_NEAR_DUPLICATE_THRESHOLD (Milvus range searches in batches, never an N x N "
    "matrix), grouped into connected components: the same shot re-exported or resized.",
)
def near_duplicates(
    context: dg.AssetExecutionContext, milvus: MilvusResource, volume: VolumeResource
) -> dg.MaterializeResult:
    index = milvus.get()
    name = index.live_collection()
    if name is None:
        context.log.warning("nothing is indexed yet: no near duplicates to look for")
        return dg.MaterializeResult(metadata={"collection": "", "pairs": 0, "groups": 0})
    threshold = collection_threshold(index, name, load_settings())
    found = find_near_duplicates(index, name, threshold, log=context.log)
    groups = found.groups()
    context.log.info(
        "%d near-duplicate pairs in %d groups among %d photos (cosine >= %s)",
        len(found.pairs),
        len(groups),
        found.photos,
        threshold,
    )
    return dg.MaterializeResult(
        metadata={
            "collection": name,
            "encoder_id": str(index.properties(name).get(PROP_ENCODER_ID, "")),
            "threshold": dg.MetadataValue.float(threshold),
            "photos": found.photos,
            "pairs": len(found.pairs),
            "groups": len(groups),
            "photos_in_groups": sum(len(g) for g in groups),
            "dagster/row_count": len(found.pairs),
            "summary": dg.MetadataValue.md(groups_markdown(found, groups)),
            "examples": dg.MetadataValue.md(examples_markdown(volume.get(), found, groups)),
            "groups_json": dg.MetadataValue.json(groups_json(found, groups)),
        }
    )


def groups_json(found: NearDuplicates, groups: list[list[str]]) -> dict:
    return {
        "threshold": found.threshold,
        "groups": [
            [{"image_id": i, "path": found.paths.get(i, "")} for i in g]
            for g in groups[:JSON_GROUPS]
        ],
        "truncated": len(groups) > JSON_GROUPS,
        "pairs": [
            {"a": p.a, "b": p.b, "score": round(p.score, 6)} for p in found.pairs[: JSON_GROUPS * 4]
        ],
    }


def groups_markdown(found: NearDuplicates, groups: list[list[str]]) -> str:
    if not groups:
        return f"No near duplicates among {found.photos} photos (cosine >= {found.threshold})."
    lines = [
        f"**{len(groups)} groups**, {sum(len(g) for g in groups)} photos, "
        f"{len(found.pairs)} pairs among {found.photos} photos (cosine >= {found.threshold}).",
        "",
        "| photos | paths |",
        "|---|---|",
    ]
    for g in groups[:LISTED_GROUPS]:
        shown = ", ".join(f"`{found.paths.get(i, i)}`" for i in g[:6])
        lines.append(f"| {len(g)} | {shown}{' ...' if len(g) > 6 else ''} |")
    if len(groups) > LISTED_GROUPS:
        lines.append(f"\n_and {len(groups) - LISTED_GROUPS} more groups_")
    return "\n".join(lines)


def examples_markdown(volume: Volume, found: NearDuplicates, groups: list[list[str]]) -> str:
    """Thumbnails of the first few groups, one row each; a photo that cannot be read is
    left out (it may have been deleted since the index was synced)."""
    rows = []
    for g in groups[:THUMBNAIL_GROUPS]:
        items = []
        for image_id in g[:THUMBNAILS_PER_GROUP]:
            path = found.paths.get(image_id, "")
            try:
                items.append((path.rsplit("/", 1)[-1], volume.read_bytes(path, MAX_PHOTO_BYTES)))
            except (OSError, ValueError):
                continue
        rows.append(thumbnail_markdown(items))
    return "\n\n".join(rows) or "_no near duplicates_"
