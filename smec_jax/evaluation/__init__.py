"""Evaluation: the Evaluator, trec_eval metrics, fidelity to the full-size ranking, reports."""
