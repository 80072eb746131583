"""A Bradley-Terry reward model on verl's engine (Table 6's "traditional reward model"): a Qwen2.5-VL backbone
with a two-layer MLP head on the last token (:mod:`.model`), the pairwise loss (:mod:`.loss`), the chosen and
rejected of a pair in one batch (:mod:`.dataset`), an FSDP engine registered for it (:mod:`.engine`) and verl's
SFT trainer subclassed to train it (:mod:`.trainer`); :mod:`.score` scores with an export."""
