"""ComfyUI entry point of the PhyPrompt node pack.

ComfyUI imports this file at start-up; it stays light and hands ComfyUI the V3 extension, whose
nodes import the heavy parts (transformers, peft) only when they run.
"""


async def comfy_entrypoint():
    from .nodes import PhyPromptExtension

    return PhyPromptExtension()
