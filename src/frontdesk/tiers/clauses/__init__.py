"""Clause tier: multi-intent messages split at conjunctions, each clause classified, decoded jointly.

"play some jazz and then book a table for two" carries one intent per clause. The tier marks
*candidate boundaries* — runs of joiner words or punctuation (``joiners``: "and", ",", "and then", …)
— and scores every split into at most ``max_clauses`` clauses with three fitted models:

* a boundary classifier (logistic regression on the joiner and the words around it): does this
  candidate separate two requests? ("play rock and roll" has an "and" that does not);
* a clause classifier: any calibrated single-label tier (``clause_tier``; linear by default, the
  encoder for harder clause confusions), trained on clauses derived from the multi-label data;
* a whole-message one-vs-rest linear tier (multi-label), which votes on the label *set*.

A hypothesis is a split plus one label per clause (each clause's ``clause_top_k`` best labels; with
``distinct_labels`` no two clauses share one). It scores
``α·log P(split) + Σ log P(label | clause) + δ·Σ_labels log P(in/out | message)``
(``α`` = ``boundary_weight``, ``δ`` = ``message_weight``; with ``fit_weights`` a small grid is tried on
validation); the decoded set is the best hypothesis' labels, ties broken by enumeration order
(deterministic).

``predict_proba`` is each label's posterior probability of being in the set: a softmax over all
hypotheses at a temperature fitted on validation, summed over the hypotheses that contain the
label, then Platt-scaled on validation (one ``a, b`` shared by all labels, like the linear tier's
multi-label mode). A multi-label gate's decision threshold ``t`` therefore keeps exactly the labels
whose calibrated chance of being in the set is ≥ t, and its set confidence (the product of the
labels' certainties) estimates the chance that the whole set is right.

Clause training data is derived from the multi-label examples: a message with k labels and exactly
k − 1 candidates splits one way; otherwise the split whose clauses all occur as clauses elsewhere
wins, else the one a bootstrap classifier (linear, trained on the single-intent messages) explains
best. Labels go to clauses by the permutation that bootstrap classifier likes best. The saved
model holds JSON and ``.npy`` files plus one sub-directory per member tier — no pickles.
"""

from frontdesk.tiers.clauses.params import DEFAULT_JOINERS, ClauseParams
from frontdesk.tiers.clauses.tier import ClauseTier

__all__ = ["DEFAULT_JOINERS", "ClauseParams", "ClauseTier"]
