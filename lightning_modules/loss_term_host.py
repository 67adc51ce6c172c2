"""Mixin that lets a LightningModule accept loss terms registered by callbacks."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch

if TYPE_CHECKING:
    from callbacks.loss_term import LossTerm


class LossTermHost:
    """Keeps the loss terms registered by :class:`callbacks.loss_term.LossTerm` callbacks.

    The training step builds a context dict and calls :meth:`extra_loss_terms`, which returns
    ``{name: (weight, per_sample_loss)}``. A host declares the context keys it provides in
    :attr:`loss_term_inputs` (standard keys: ``x0_pred``, ``target``, ``mask``, ``condition``,
    ``stage``); a term that needs a key the host does not provide is refused at registration, so
    a configured loss term can never silently add nothing.
    """

    #: context keys this module's training step passes to the loss terms (override per module)
    loss_term_inputs: frozenset[str] = frozenset()

    def _terms(self) -> dict[str, "LossTerm"]:
        if "_loss_terms" not in self.__dict__:
            self.__dict__["_loss_terms"] = {}
        return self.__dict__["_loss_terms"]

    def register_loss_term(self, term: "LossTerm") -> None:
        """Add ``term``; a second term with the same name, or one needing context this module lacks, is an error."""
        missing = sorted(set(term.requires) - set(self.loss_term_inputs))
        if missing:
            raise ValueError(
                f"{type(term).__name__} needs {missing} from the training step, which {type(self).__name__} does not "
                f"provide (it provides {sorted(self.loss_term_inputs)}); remove the callback from trainer.callbacks"
            )
        terms = self._terms()
        if term.name in terms and terms[term.name] is not term:
            raise ValueError(f"two loss-term callbacks are named {term.name!r}; keep one in trainer.callbacks")
        terms[term.name] = term

    def unregister_loss_term(self, term: "LossTerm") -> None:
        """Remove ``term`` if it is registered."""
        if self._terms().get(term.name) is term:
            del self._terms()[term.name]

    @property
    def loss_term_names(self) -> list[str]:
        """Names of the registered loss terms."""
        return list(self._terms())

    def extra_loss_terms(self, ctx: Mapping[str, torch.Tensor]) -> dict[str, tuple[float, torch.Tensor]]:
        """Evaluate every registered term on ``ctx``; terms that return None are left out."""
        out = {}
        for name, term in self._terms().items():
            value = term.compute(ctx)
            if value is not None:
                out[name] = (term.weight, value)
        return out
