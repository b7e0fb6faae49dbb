"""Defense-Aware Merging: Concrete masks and AdaMerging coefficients learnt on unlabeled inputs with a
surrogate trigger (guard.defenses.dam.optimise), on classifier or decoder-LM tasks (tasks), configured
by DamSettings (settings); the result drives the streaming merge through a TensorHook (hook)."""

from guard._lazy import lazy_attributes

__all__ = ["CausalLMTasks", "ClassifierTasks", "DamResult", "DamSettings", "TaskVectors", "run_dam"]

__getattr__ = lazy_attributes(__name__, {
    "CausalLMTasks": "guard.defenses.dam.tasks",
    "ClassifierTasks": "guard.defenses.dam.tasks",
    "DamResult": "guard.defenses.dam.optimise",
    "TaskVectors": "guard.defenses.dam.optimise",
    "run_dam": "guard.defenses.dam.optimise",
    "DamSettings": "guard.defenses.dam.settings",
})
