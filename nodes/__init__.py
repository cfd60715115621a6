"""The PhyPrompt nodes, as a ComfyUI V3 extension. Node ids start with `PhyPrompt` and never change:
they are what users' saved workflows refer to."""

from comfy_api.latest import ComfyExtension, io

from .judge_nodes import PhysicsJudge, PickBestVideo, judge_loaders
from .refiner_nodes import PhysicsRefine, PhysicsRefineList, PhysicsRefineVariants, refiner_loaders
from .video_nodes import video_nodes


class PhyPromptExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [*refiner_loaders(), PhysicsRefine, PhysicsRefineList, PhysicsRefineVariants, *video_nodes(),
                *judge_loaders(), PhysicsJudge, PickBestVideo]
