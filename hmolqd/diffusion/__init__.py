"""Pure diffusion math: tensor functions with no model or training state (tested on their own).

`gaussian`: noise schedules (Ho et al. 2020; Nichol & Dhariwal 2021), forward noising, eps / v targets
(Salimans & Ho 2022) and DDIM steps (Song et al. 2021). `absorbing`: the [MASK] process over code indices
(Austin et al. 2021), its loss, classifier-free guidance on logits and the unmasking steps (random order;
confidence order as in MaskGIT, Chang et al. 2022).

May import: torch only. Imported by `hmolqd.models`.
"""
