"""Infrastructure every floor above uses and that knows nothing of prompts or physics: the registry
mechanism of the families (`registry`), the lifecycle of anything that holds weights (`lifecycle`), how a
kind describes itself and the spec a user's input becomes (`kinds`), checkpoints and model folders
(`checkpoints`), devices and dtypes (`devices`), atomic files and content fingerprints (`files`), the progress
and cancel protocol (`progress`), the one HTTP client for OpenAI-compatible servers and its `ServerSpec`
(`endpoint`), and what every command line shares, phyprompt's and train's (`console`)."""
