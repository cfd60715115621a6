"""ComfyUI entry point of the PhyPrompt node pack.

ComfyUI imports this file at start-up; it stays light and hands ComfyUI the V3 extension. Its node list
reads the refiner and judge kinds' descriptions, which imports their modules (torch and transformers, which
ComfyUI has loaded by then); the weights, and peft, are loaded only when a node runs.
"""


async def comfy_entrypoint():
    from .nodes import PhyPromptExtension

    return PhyPromptExtension()
