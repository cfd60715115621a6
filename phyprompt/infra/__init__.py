"""Infrastructure every floor above uses and that knows nothing of prompts or physics: the registry
mechanism of the families (`registry`), the lifecycle of anything that holds weights (`lifecycle`),
checkpoints and model folders (`checkpoints`), devices and dtypes (`devices`), atomic files (`files`),
the progress and cancel protocol (`progress`), the one HTTP client for OpenAI-compatible servers
(`endpoint`), and what every command line shares, phyprompt's and train's (`console`)."""
