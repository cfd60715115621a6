"""The refiner's language, shared by every refiner, the rewards and the evaluation: the instruction it is
given (`instruction`), the answer it must write and the one parser of it (`contract`), the video models'
text-encoder budgets (`targets`, `budget`), prompt files (`prompt_lists`) and text metrics (`metrics`).
Nothing here imports torch."""
