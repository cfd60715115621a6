"""The PhyPrompt nodes, as a ComfyUI V3 extension. Node ids start with `PhyPrompt` and never change:
they are what users' saved workflows refer to."""

from comfy_api.latest import ComfyExtension, io

from .judge_nodes import LoadAPIJudge, LoadPhysicsJudge, PhysicsJudge, PickBestVideo
from .refiner_nodes import LoadAPIRefiner, LoadPhysicsRefiner, PhysicsRefine, PhysicsRefineList, PhysicsRefineVariants
from .video_nodes import video_nodes


class PhyPromptExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [LoadPhysicsRefiner, LoadAPIRefiner, PhysicsRefine, PhysicsRefineList, PhysicsRefineVariants,
                *video_nodes(), LoadPhysicsJudge, LoadAPIJudge, PhysicsJudge, PickBestVideo]
