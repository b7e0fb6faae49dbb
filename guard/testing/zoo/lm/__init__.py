"""The decoder LM family of the zoo: a Llama-style model (RoPE, GQA) trained on synthetic digit tasks.

    fam = build_family("small", seed=0)      # cached; a cold small build takes about a minute on 2 cores
    fam.base, fam.experts["sort"]            # safetensors directories (LlamaForCausalLM.from_pretrained)
    fam.evaluate(fam.experts["sort"], "sort")  # exact match on held-out prompts
    fam.unsafe_rate(fam.experts["reverse"])  # refusal erosion on harmful-marked prompts
    fam.calibration("sort")                  # unlabeled prompts
    fam.merge("ties")                        # a merged model (guard.merge), profile's parameters

The base is the aligned model of the safety pair; the experts are its eroded fine-tunes. The harmful
copy and the backdoored experts are built by attacks/ (safety stripping, BadNets, amplified vectors).
"""

from guard.testing.zoo.lm import metrics, model, tasks
from guard.testing.zoo.lm.family import LMFamily, ModelLike, as_model, build_family, deterministic_build, expert_seed, train_expert
from guard.testing.zoo.lm.profiles import PROFILES, Profile, get_profile

__all__ = [
    "PROFILES", "LMFamily", "ModelLike", "Profile", "as_model", "build_family", "deterministic_build", "expert_seed",
    "get_profile", "metrics", "model", "tasks", "train_expert",
]
