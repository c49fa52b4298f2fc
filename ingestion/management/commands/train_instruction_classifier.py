"""Make the instruction classifier's reference vectors (ingestion/providers/neighbours.py)
from the train splits.

    python manage.py train_instruction_classifier

Positives, text written as a prompt to a chatbot: every English row of the deepset train split
(its injections and its benign questions alike: inside a document, a question or a request
addressed to the assistant is an instruction either way) and the attack texts of the BIPIA train
rows. The classifier judges English sentences only, so every text here is English too.
Negatives, document content: the sentences of the BIPIA train rows' clean e-mails, of a seeded
sample of SciFact abstracts, of the sample knowledge base and of every fourth page of the
400-page IRS manual in messy-docs (procedural text full of imperatives meant for people). No
test row of either injection set is read.

The method and the threshold are chosen on the training data alone, by five-fold
cross-validation in which every BIPIA attack category is held out whole (the test rows' attack
categories are all new, so that is the case to be good at): nearest neighbours (mean cosine of
the 5 nearest positives minus that of the 5 nearest negatives) recalled more held-out BIPIA
attacks at the same false-positive rate than logistic regression, an RBF SVM or a small MLP
(docs/ingestion.md has the figures). The threshold is the out-of-fold score that 1% of the
negative sentences the classifier would judge (``addressed`` ones) reach. Deterministic.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ingestion.pipeline.injection import addressed, sentences
from ingestion.pipeline.language import english
from ingestion.pipeline.parse import parse_file
from ingestion.providers.neighbours import META, VECTORS, neighbour_scores

K = 5
SCALE = 10.0
FOLDS = 5
FALSE_POSITIVE_RATE = 0.01
SCIFACT_DOCS = 600
MAX_PER_SOURCE = 3000
IRS_MANUAL = "pdf2image-memory-error-test-400p.pdf"


class Command(BaseCommand):
    help = "Make the instruction classifier's reference vectors from the train splits."

    def handle(self, *args: Any, **options: Any) -> None:
        from retrieval.providers.registry import embedder

        data = Path(settings.RAGAPP_SHARED_DATA)
        files = {
            "deepset": data / "injection" / "deepset_prompt_injections.jsonl",
            "bipia": data / "injection-indirect" / "bipia_indirect_injection.jsonl",
            "scifact": data / "beir" / "scifact" / "corpus.jsonl",
            "irs_manual": data / "messy-docs" / IRS_MANUAL,
        }
        missing = [str(p) for p in files.values() if not p.exists()]
        if missing:
            raise CommandError(f"training data not found: {', '.join(missing)}")
        positives, attacks, negatives = training_texts(files)
        texts = positives + negatives
        labels = np.array([1] * len(positives) + [0] * len(negatives))
        emb = embedder()
        self.stdout.write(f"embedding {len(texts)} texts with {emb.name} ...")
        vectors = emb.embed_documents(texts)

        folds = fold_of(texts, attacks)
        out_of_fold = np.zeros(len(texts))
        for fold in range(FOLDS):
            train, held = folds != fold, folds == fold
            reference = vectors[train]
            out_of_fold[held] = neighbour_scores(
                vectors[held],
                reference[labels[train] == 1],
                reference[labels[train] == 0],
                k=K,
                scale=SCALE,
            )
        judged = np.array([addressed(t) for t in texts])
        negative_scores = np.sort(out_of_fold[(labels == 0) & judged])
        threshold = float(negative_scores[int(len(negative_scores) * (1 - FALSE_POSITIVE_RATE))])
        is_attack = np.array([t in attacks for t in texts]) & (labels == 1)

        np.savez_compressed(
            VECTORS,
            positives=vectors[labels == 1].astype(np.float16),
            negatives=vectors[labels == 0].astype(np.float16),
        )
        meta = {
            "method": "neighbours",
            "k": K,
            "scale": SCALE,
            "threshold": round(threshold, 4),
            "embedder_model": emb.name.split("@")[0],
            "embedder": emb.name,
            "trained_at": date.today().isoformat(),
            "counts": {
                "positives": len(positives),
                "bipia_train_attacks": len(attacks),
                "negatives": len(negatives),
                "negatives_judged": int(((labels == 0) & judged).sum()),
            },
            "cross_validation": {
                "folds": "5, each BIPIA attack category held out whole",
                "false_positive_rate_judged_negatives": FALSE_POSITIVE_RATE,
                "false_positive_rate_all_negatives": round(
                    float((out_of_fold[labels == 0] >= threshold).mean()), 4
                ),
                "recall_positives": round(float((out_of_fold[labels == 1] >= threshold).mean()), 4),
                "recall_bipia_train_attacks": round(
                    float((out_of_fold[is_attack] >= threshold).mean()), 4
                ),
            },
            "data_sha256": {name: _sha256(path) for name, path in files.items()},
        }
        META.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        summary = {k: meta[k] for k in ("threshold", "counts", "cross_validation")}
        self.stdout.write(json.dumps(summary, indent=2))
        self.stdout.write(f"wrote {VECTORS} and {META}")


def fold_of(texts: list[str], attacks: dict[str, str]) -> np.ndarray:
    """The fold of each text: a BIPIA attack goes with its category, the rest round-robin."""
    categories = sorted(set(attacks.values()))
    return np.array(
        [
            categories.index(attacks[t]) % FOLDS if t in attacks else i % FOLDS
            for i, t in enumerate(texts)
        ]
    )


def training_texts(files: dict[str, Path]) -> tuple[list[str], dict[str, str], list[str]]:
    """(positives, the BIPIA train attacks among them with their category, negatives); train
    splits only."""
    deepset = _jsonl(files["deepset"])
    bipia = [r for r in _jsonl(files["bipia"]) if r["bipia_split"] == "train"]
    attacks = {
        " ".join(r["attack_text"].split()): r["attack_category"] for r in bipia if r["label"] == 1
    }
    positives = [r["text"] for r in deepset if r["split"] == "train"]
    written = set(positives)
    positives += [a for a in sorted(attacks) if a not in written]

    negatives: list[str] = []
    for row in bipia:
        if row["label"] == 0:
            negatives.extend(sentences(row["text"]))
    abstracts = _jsonl(files["scifact"])
    random.Random(0).shuffle(abstracts)
    science = [s for doc in abstracts[:SCIFACT_DOCS] for s in sentences(doc["text"])]
    negatives.extend(science[:MAX_PER_SOURCE])
    for path in sorted(Path(settings.RAGAPP_SAMPLE_KB_DIR).iterdir()):
        if path.is_file() and path.name.lower() != "readme.md":
            negatives.extend(_parsed_sentences(path))
    manual = _parsed_sentences(files["irs_manual"], every_nth_page=4)
    random.Random(0).shuffle(manual)
    negatives.extend(manual[:MAX_PER_SOURCE])
    # English only, as the classifier judges only English sentences (classifier_pieces).
    positives = [p for p in positives if english(p)]
    known = set(positives)
    negatives = [n for n in dict.fromkeys(negatives) if n not in known and english(n)]
    return positives, {a: c for a, c in attacks.items() if a in known}, negatives


def _parsed_sentences(path: Path, *, every_nth_page: int = 1) -> list[str]:
    parsed = parse_file(path, filename=path.name)
    return [
        s
        for block in parsed.blocks
        if block.page is None or (block.page - 1) % every_nth_page == 0
        for s in sentences(block.text)
    ]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
