"""PhyPrompt training: data (train.data), stage-1 SFT (train.sft), export (train.export). See train/README.md."""
